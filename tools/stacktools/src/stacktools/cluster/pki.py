"""Certificates and keys for the local Kubernetes control plane.

One self-signed CA signs a serving certificate (127.0.0.1, localhost and the in-cluster names
of the ``kubernetes`` Service) and client certificates: ``admin`` in ``system:masters`` for
people and tests, ``system:kube-controller-manager`` for the controller-manager, whose RBAC
bindings the API server creates at start-up. A separate key pair signs service-account
tokens. A second CA signs the ``front-proxy-client`` certificate that the API server presents
to aggregated API servers (request-header authentication), as in kubeadm clusters; without it
the controller-manager's delegated authentication logs errors about the missing CA bundle.
ECDSA P-256 throughout: Kubernetes accepts it everywhere and it is fast to generate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# In-cluster names of the API server; the first address of the service range goes with them.
KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

FRONT_PROXY_CLIENT = "front-proxy-client"


@dataclass(frozen=True)
class CertPaths:
    """A certificate and its private key on disk (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file the control plane components read."""

    ca: CertPaths
    serving: CertPaths
    admin: CertPaths
    controller_manager: CertPaths
    front_proxy_ca: CertPaths
    front_proxy_client: CertPaths
    service_account_key: Path
    service_account_pub: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures for every certificate; certificate and CRL signing only for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _create_ca(paths: CertPaths, common_name: str) -> None:
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key, paths.key)
    _write_cert(cert, paths.cert)


def _load_ca(paths: CertPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        msg = f"{paths.key} is not an ECDSA key; delete the pki folder to regenerate it"
        raise TypeError(msg)
    return cert, key


def _create_leaf(
    ca: CertPaths,
    paths: CertPaths,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> None:
    ca_cert, ca_key = _load_ca(ca)
    key = _key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(key, paths.key)
    _write_cert(builder.sign(ca_key, hashes.SHA256()), paths.cert)


def _create_service_account_keys(private: Path, public: Path) -> None:
    key = _key()
    _write_key(key, private)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _serving_ips(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def ensure_client_cert(
    directory: Path, ca: CertPaths, stem: str, common_name: str, organization: str | None = None
) -> CertPaths:
    """A client certificate (``<stem>.crt``/``.key`` in ``directory``) signed by ``ca``, once.

    Kubernetes reads the user from the common name and the group from the organization, e.g.
    ``system:node:<name>`` in ``system:nodes`` for a kubelet (the Node authorizer's rule)."""
    paths = CertPaths(directory / f"{stem}.crt", directory / f"{stem}.key")
    if not paths.cert.is_file():
        _create_leaf(ca, paths, _name(common_name, organization), ExtendedKeyUsageOID.CLIENT_AUTH)
    return paths


def ensure_serving_cert(
    directory: Path,
    ca: CertPaths,
    stem: str,
    common_name: str,
    *,
    ips: list[str],
    names: list[str],
) -> CertPaths:
    """A TLS serving certificate for ``ips`` and DNS ``names`` signed by ``ca``, once."""
    paths = CertPaths(directory / f"{stem}.crt", directory / f"{stem}.key")
    if not paths.cert.is_file() or not set(ips) <= _serving_ips(paths.cert):
        sans: list[x509.GeneralName] = [
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips),
            *(x509.DNSName(name) for name in names),
        ]
        _create_leaf(ca, paths, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    return paths


def ensure_pki(directory: Path, service_ip: str, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Create the files under ``directory`` once; later calls reuse them (a restart keeps trust).

    ``extra_ips``: more addresses the API server is reached on (the address a node reaches it
    on); a serving certificate that lacks one is made anew."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)

    def pair(stem: str) -> CertPaths:
        return CertPaths(directory / f"{stem}.crt", directory / f"{stem}.key")

    pki = Pki(
        ca=pair("ca"),
        serving=pair("serving"),
        admin=pair("admin"),
        controller_manager=pair("kube-controller-manager"),
        front_proxy_ca=pair("front-proxy-ca"),
        front_proxy_client=pair("front-proxy-client"),
        service_account_key=directory / "service-account.key",
        service_account_pub=directory / "service-account.pub",
    )
    if not pki.ca.cert.is_file():
        _create_ca(pki.ca, "gateway-api-stack-controlplane-ca")
    if not pki.front_proxy_ca.cert.is_file():
        _create_ca(pki.front_proxy_ca, "gateway-api-stack-front-proxy-ca")
    ensure_serving_cert(
        directory,
        pki.ca,
        "serving",
        "kube-apiserver",
        ips=["127.0.0.1", service_ip, *extra_ips],
        names=["localhost", *KUBERNETES_SERVICE_NAMES],
    )
    if not pki.admin.cert.is_file():
        _create_leaf(
            pki.ca, pki.admin, _name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH
        )
    if not pki.controller_manager.cert.is_file():
        _create_leaf(
            pki.ca,
            pki.controller_manager,
            _name("system:kube-controller-manager"),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
    if not pki.front_proxy_client.cert.is_file():
        _create_leaf(
            pki.front_proxy_ca,
            pki.front_proxy_client,
            _name(FRONT_PROXY_CLIENT),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
    if not pki.service_account_key.is_file():
        _create_service_account_keys(pki.service_account_key, pki.service_account_pub)
    return pki
