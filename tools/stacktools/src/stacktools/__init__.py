"""The test harness: builds and runs the real parts the tests use, on this machine.

* :mod:`stacktools.builds` — what the set-up step builds (FerretDB, the Kubernetes control
  plane, istiod, ...), cached and keyed by what builds it;
* :mod:`stacktools.servers` — the processes the tests start (one module each);
* :mod:`stacktools.cluster` — certificates, kubeconfigs and the pinned upstream CRDs;
* :mod:`stacktools.prepare` — the set-up step itself (``python -m stacktools prepare``);
* :mod:`stacktools.pytest_plugin` — the fixtures.

One way in on the command line: ``python -m stacktools <command>`` (see ``--help``).
"""
