"""The processes the tests run, one module each, all on one start/ready/stop base
(:class:`stacktools.servers.process.ManagedServer`)."""
