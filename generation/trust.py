"""Trust: every generated file says it is AI-generated, carries a watermark and a signed manifest.

Three independent marks, so that stripping one does not erase the others:

- **Label** in the file's metadata: XMP with the IPTC digital source type
  ``trainedAlgorithmicMedia`` (PNG ``iTXt`` and JPEG ``APP1``) plus plain PNG text chunks
  (``ai_generated``, ``generator``, ``watermark_id``).
- **Invisible watermark** (:class:`Watermark`): a 64-bit payload, a 32-bit id plus a 32-bit check
  (keyed SHA-256 of the id), spread over low-mid DCT frequencies of the luminance at a canonical
  256x256 grid. Detection resizes any input to that grid, so it survives rescaling and JPEG; a
  payload counts as present only when its check matches (a random image matches with
  probability 2^-32), the one decision threshold for posters and real photos alike.
- **C2PA manifest** (:func:`sign_file`) with a ``c2pa.created`` action of digital source type
  ``trainedAlgorithmicMedia``, signed ES256 by a leaf certificate issued by a local CA that the
  engine creates on first use in ``$CROSSREC_HOME/keys`` (C2PA refuses self-signed leaf
  certificates). ``sign_file`` works on any format c2pa supports (PNG, JPEG, MP4, ...).

:func:`verify` reads all three back; :func:`watermark_benchmark` measures recovery after JPEG
re-encoding and resizing and false detections on real photos.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import io
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, PngImagePlugin
from scipy.fft import dctn, idctn

from crossrec_core.errors import CrossrecError, ImageDecodeError
from crossrec_core.paths import crossrec_home
from crossrec_core.persist import atomic_write_bytes
from generation.style import ImageInput, open_rgb

__all__ = [
    "DIGITAL_SOURCE_TYPE", "GENERATOR", "ProvenanceError", "Watermark", "WatermarkReading", "SigningKeys",
    "ensure_keys", "label_xmp", "save_labelled", "sign_file", "protect_image", "ProtectedFile", "Verification",
    "verify", "WatermarkBenchmark", "watermark_benchmark", "payload_id_for",
]

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "crossrec"
_WM_KEY = b"crossrec-watermark-v1"  # public: the watermark marks provenance, it is not a secret


class ProvenanceError(CrossrecError):
    """Signing keys or a manifest could not be created or written."""


def payload_id_for(key: str | bytes) -> int:
    """A 32-bit watermark id derived from ``key`` (for example an asset's content hash)."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


# -- watermark ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WatermarkReading:
    """``payload_id`` is the embedded id when the check matched, else None; ``confidence`` is how
    close the 64 projections sit to a lattice point, 0..1 (about 0.5 on unmarked images)."""

    payload_id: int | None
    confidence: float


class Watermark:
    """Spread-transform dither modulation (STDM, Chen and Wornell 2001) on luminance DCT
    coefficients at a canonical ``grid`` x ``grid`` size.

    Each of the 64 payload bits owns ``chips`` coefficients chosen by a keyed generator among the
    frequencies with ``band[0] <= u + v < band[1]``; their projection on a keyed +-1 direction is
    quantised to a lattice of step ``step`` shifted by half a step for a 1. Quantising, unlike
    adding a pattern, cancels the image's own content, so 64 bits fit in low-mid frequencies that
    JPEG and resizing keep. The change is made at the canonical size (inverse DCT) and resized onto
    the image, a few rounds until the canonical view reads back right.
    """

    BITS = 64

    def __init__(self, step: float = 40.0, grid: int = 128, band: tuple[int, int] = (2, 96), chips: int = 60,
                 rounds: int = 4):
        if not 0 < step <= 400:
            raise ValueError(f"step={step!r}: must be in (0, 400]")
        self.step, self.grid, self.band, self.chips, self.rounds = float(step), int(grid), band, int(chips), int(rounds)
        u, v = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        candidates = np.flatnonzero(((u + v) >= band[0]) & ((u + v) < band[1]))
        if len(candidates) < self.BITS * self.chips:
            raise ValueError(f"band={band!r} holds {len(candidates)} coefficients, fewer than {self.BITS * self.chips}")
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(_WM_KEY).digest()[:8], "big"))
        self._index = rng.choice(candidates, size=(self.BITS, self.chips), replace=False)
        self._chips = rng.choice(np.array([-1.0, 1.0]), size=(self.BITS, self.chips)) / np.sqrt(self.chips)

    @staticmethod
    def _bits(payload_id: int) -> np.ndarray:
        body = int(payload_id).to_bytes(4, "big")
        check = hashlib.sha256(_WM_KEY + body).digest()[:4]
        return np.unpackbits(np.frombuffer(body + check, dtype=np.uint8)).astype(np.float64)

    def _projections(self, y: np.ndarray) -> np.ndarray:
        """``(64,)`` projections of the luminance ``y`` ``(H, W)`` at the canonical grid."""
        # an anti-aliased downsample: content above the grid's Nyquist would alias differently
        # after each rescaling of the image
        img = Image.fromarray(y.astype(np.float32), mode="F").resize((self.grid, self.grid), Image.BILINEAR)
        coeffs = dctn(np.asarray(img, dtype=np.float64), norm="ortho").reshape(-1)
        return (coeffs[self._index] * self._chips).sum(axis=1)

    def embed(self, image: ImageInput, payload_id: int) -> Image.Image:
        """``image`` with ``payload_id`` (0 .. 2**32-1) embedded, RGB, same size."""
        if not isinstance(payload_id, (int, np.integer)) or not 0 <= int(payload_id) < 2 ** 32:
            raise ValueError(f"payload_id={payload_id!r}: must be an int in 0..2**32-1")
        rgb = open_rgb(image)
        ycc = np.asarray(rgb.convert("YCbCr"), dtype=np.float64)
        y0 = ycc[:, :, 0].copy()
        offset = self._bits(int(payload_id)) * self.step / 2
        target = self.step * np.round((self._projections(y0) - offset) / self.step) + offset
        y = y0
        for _ in range(self.rounds):
            error = target - self._projections(np.rint(y))
            if np.abs(error).max() < self.step / 16:
                break
            coeffs = np.zeros(self.grid * self.grid)
            np.add.at(coeffs, self._index.reshape(-1), (error[:, None] * self._chips).reshape(-1))
            delta = idctn(coeffs.reshape(self.grid, self.grid), norm="ortho").astype(np.float32)
            delta = np.asarray(Image.fromarray(delta, mode="F").resize(rgb.size, Image.BICUBIC), dtype=np.float64)
            y = np.clip(y + delta, 0, 255)
        ycc[:, :, 0] = y
        return Image.fromarray(np.rint(ycc).astype(np.uint8), mode="YCbCr").convert("RGB")

    def read(self, image: ImageInput) -> WatermarkReading:
        """The payload of ``image`` if one of ours is present (the check must match)."""
        rgb = open_rgb(image)
        if min(rgb.size) < 32:
            return WatermarkReading(None, 0.0)
        y = np.asarray(rgb.convert("YCbCr"), dtype=np.float64)[:, :, 0]
        half = self._projections(y) / (self.step / 2)
        bits = (np.round(half).astype(np.int64) % 2).astype(np.uint8)
        # 1 at a lattice point, 0 half-way between the two lattices (chance level is 0.5)
        confidence = float(np.mean(1.0 - 2.0 * np.abs(half - np.round(half))))
        raw = np.packbits(bits).tobytes()
        body, check = raw[:4], raw[4:]
        if hashlib.sha256(_WM_KEY + body).digest()[:4] != check:
            return WatermarkReading(None, confidence)
        return WatermarkReading(int.from_bytes(body, "big"), confidence)


# -- label --------------------------------------------------------------------------------------

def label_xmp(payload_id: int | None = None, extra: Mapping[str, str] | None = None) -> str:
    """XMP packet: IPTC digital source type ``trainedAlgorithmicMedia`` plus crossrec fields."""
    fields = {"generator": GENERATOR, "ai_generated": "true"}
    if payload_id is not None:
        fields["watermark_id"] = str(int(payload_id))
    fields.update({k: str(v) for k, v in (extra or {}).items()})
    from xml.sax.saxutils import escape, quoteattr

    attrs = "\n   ".join(f"crossrec:{escape(k)}={quoteattr(v)}" for k, v in sorted(fields.items()) if k.isidentifier())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '   xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '   xmlns:crossrec="https://github.com/crossrec/ns/1.0/"\n'
        f'   Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"\n   {attrs}/>\n'
        ' </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>'
    )


def save_labelled(image: Image.Image, path: str | os.PathLike, *, payload_id: int | None = None,
                  extra: Mapping[str, str] | None = None, quality: int = 92) -> Path:
    """Write ``image`` to ``path`` (PNG or JPEG by suffix) atomically with the AI-generated label."""
    path = Path(path)
    suffix = path.suffix.lower()
    xmp = label_xmp(payload_id, extra)
    buf = io.BytesIO()
    if suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("ai_generated", "true")
        info.add_text("generator", GENERATOR)
        info.add_text("digital_source_type", DIGITAL_SOURCE_TYPE)
        if payload_id is not None:
            info.add_text("watermark_id", str(int(payload_id)))
        info.add_itxt("XML:com.adobe.xmp", xmp)
        image.save(buf, "PNG", pnginfo=info)
    elif suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(buf, "JPEG", quality=int(quality), xmp=xmp.encode("utf-8"))
    else:
        raise ValueError(f"path={str(path)!r}: images are saved as .png, .jpg or .jpeg")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _read_label(path: Path) -> tuple[bool, list[str]]:
    """(labelled, where): the metadata label of an image file, if any."""
    where: list[str] = []
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}) if path.suffix.lower() == ".png" else {}
            if text.get("ai_generated") == "true":
                where.append("png-text")
            xmp = im.info.get("xmp") or text.get("XML:com.adobe.xmp") or b""
    except (OSError, SyntaxError, ValueError):
        return False, where
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", "replace")
    if DIGITAL_SOURCE_TYPE in xmp:
        where.append("xmp")
    return bool(where), where


# -- keys and C2PA ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKeys:
    """Where the local CA and the signing certificate live (``$CROSSREC_HOME/keys`` by default):
    ``ca.pem`` (the trust anchor), ``ca.key``, ``signer.pem`` (leaf + CA chain), ``signer.key``."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def signer_chain(self) -> Path:
        return self.folder / "signer.pem"

    @property
    def signer_key(self) -> Path:
        return self.folder / "signer.key"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_keys(folder: str | os.PathLike | None = None) -> SigningKeys:
    """The signing keys in ``folder`` (default ``$CROSSREC_HOME/keys``), created on first use:
    a P-256 CA (10 years) and a leaf (2 years, digitalSignature + emailProtection, as C2PA asks)
    that is re-issued when it expires. Private keys are written 0600."""
    keys = SigningKeys(Path(folder).expanduser() if folder is not None else crossrec_home() / "keys")
    with _locked(keys.folder):
        try:
            if not (keys.ca_cert.is_file() and (keys.folder / "ca.key").is_file()):
                _create_ca(keys)
            if not _leaf_is_current(keys):
                _create_leaf(keys)
        except OSError as exc:
            raise ProvenanceError(f"cannot write signing keys in {keys.folder}: {exc}") from exc
    return keys


def _private_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)
    os.chmod(path, 0o600)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, GENERATOR),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(**on):
    from cryptography import x509

    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: bool(on.get(n, False)) for n in names})


def _create_ca(keys: SigningKeys) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    name = _name(f"{GENERATOR} local CA {secrets.token_hex(4)}")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(keys.folder / "ca.key", _private_pem(key))
    atomic_write_bytes(keys.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    keys.signer_chain.unlink(missing_ok=True)  # a leaf of an old CA is no longer valid


def _leaf_is_current(keys: SigningKeys) -> bool:
    from cryptography import x509

    if not (keys.signer_chain.is_file() and keys.signer_key.is_file()):
        return False
    leaf = x509.load_pem_x509_certificates(keys.signer_chain.read_bytes())[0]
    return leaf.not_valid_after_utc > _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1)


def _create_leaf(keys: SigningKeys) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(keys.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key((keys.folder / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(f"{GENERATOR} creative signer"))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=730))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(keys.signer_key, _private_pem(key))
    pem = serialization.Encoding.PEM
    atomic_write_bytes(keys.signer_chain, cert.public_bytes(pem) + ca_cert.public_bytes(pem))


def _mime(path: Path) -> str:
    import mimetypes

    mime = mimetypes.guess_type(path.name)[0]
    if mime is None:
        raise ValueError(f"path={str(path)!r}: unknown file type; sign_file needs a suffix such as .png, .jpg, .mp4")
    return mime


def sign_file(path: str | os.PathLike, *, title: str | None = None, assertions: Sequence[Mapping[str, Any]] = (),
              dest: str | os.PathLike | None = None, keys: SigningKeys | None = None,
              source_type: str = DIGITAL_SOURCE_TYPE) -> Path:
    """Embed a signed C2PA manifest in ``path`` (or write the signed copy to ``dest``), any file
    type c2pa supports (PNG, JPEG, WebP, MP4, MOV, WAV, PDF...). The manifest records a
    ``c2pa.created`` action with digital source type ``source_type`` plus ``assertions`` (each
    ``{"label": ..., "data": ...}``). Returns the signed file's path."""
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    mime = _mime(path)
    if mime not in c2pa.Builder.get_supported_mime_types():
        raise ValueError(f"path={str(path)!r}: {mime} is not a type c2pa can sign")
    keys = keys or ensure_keys()
    manifest = {
        "claim_generator_info": [{"name": GENERATOR, "version": "1"}],
        "title": title or path.name,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type}]}},
            *[dict(a) for a in assertions],
        ],
    }
    out = Path(dest) if dest is not None else path
    signer_info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, keys.signer_chain.read_bytes(),
                                      keys.signer_key.read_bytes(), None)
    buf = io.BytesIO()
    try:
        with c2pa.Signer.from_info(signer_info) as signer, c2pa.Builder(manifest) as builder, open(path, "rb") as src:
            builder.sign(signer, mime, src, buf)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"cannot sign {path}: {exc}") from exc
    atomic_write_bytes(out, buf.getvalue())
    return out


@dataclass(frozen=True)
class ProtectedFile:
    """A written, labelled, watermarked and signed image."""

    path: Path
    payload_id: int
    mime: str


def protect_image(image: Image.Image, path: str | os.PathLike, *, payload_id: int | None = None,
                  title: str | None = None, metadata: Mapping[str, str] | None = None,
                  watermark: Watermark | None = None, keys: SigningKeys | None = None) -> ProtectedFile:
    """Watermark ``image`` with ``payload_id`` (default: derived from its pixels), write it to
    ``path`` (.png or .jpg) with the AI-generated label and ``metadata`` in its XMP, then embed a
    signed C2PA manifest. Nothing is left at ``path`` unless all three succeed."""
    path = Path(path)
    if payload_id is None:
        payload_id = payload_id_for(np.asarray(image.convert("RGB")).tobytes())
    marked = (watermark or default_watermark()).embed(image, int(payload_id))
    tmp = path.with_name(f".{path.stem}.unsigned{path.suffix}")
    try:
        save_labelled(marked, tmp, payload_id=int(payload_id), extra=metadata)
        assertion = {"label": "org.crossrec.creative", "data": {"watermark_id": int(payload_id), **dict(metadata or {})}}
        sign_file(tmp, title=title or path.name, assertions=[assertion], dest=path, keys=keys)
    finally:
        tmp.unlink(missing_ok=True)
    return ProtectedFile(path, int(payload_id), _mime(path))


# -- verification -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found in a file.

    ``manifest``: "valid" (signature and hashes check out), "invalid" (present but broken or
    tampered) or "absent"; ``trusted`` whether the signer chains to this engine's local CA.
    ``ours``: any of our marks is present; a real photo has none ("not ours")."""

    path: str
    label: bool
    label_sources: tuple[str, ...]
    watermark_id: int | None
    watermark_confidence: float | None
    manifest: str
    trusted: bool
    manifest_detail: str
    signer: str | None
    digital_source_type: str | None
    ours: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ours", bool(self.watermark_id is not None or self.manifest == "valid" and self.trusted))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Lines for a person: label, watermark, manifest, and the verdict."""
        wm = f"payload {self.watermark_id}" if self.watermark_id is not None else "absent"
        lines = [
            f"file:      {self.path}",
            f"label:     {'AI-generated (' + ', '.join(self.label_sources) + ')' if self.label else 'absent'}",
            f"watermark: {wm}",
            f"manifest:  {self.manifest}" + (f" ({self.manifest_detail})" if self.manifest_detail else ""),
        ]
        if self.ours:
            lines.append("verdict:   made by crossrec (AI-generated)")
        elif self.label or self.manifest != "absent":
            lines.append("verdict:   not ours (carries marks from another generator)")
        else:
            lines.append("verdict:   not ours (no crossrec label, watermark or manifest)")
        return "\n".join(lines)


def _read_manifest(path: Path, keys: SigningKeys | None) -> tuple[str, bool, str, str | None, str | None]:
    import c2pa

    try:
        context = None
        if keys is not None and keys.ca_cert.is_file():
            context = c2pa.Context.from_dict({"trust": {"trust_anchors": keys.ca_cert.read_text()},
                                              "verify": {"verify_trust": True}})
        reader = c2pa.Reader.try_create(str(path), context=context) if context else c2pa.Reader.try_create(str(path))
    except c2pa.C2paError as exc:
        message = str(exc)
        if "NotSupported" in type(exc).__name__ or "not supported" in message.lower():
            return "absent", False, f"format not supported by c2pa ({message})", None, None
        return "invalid", False, message, None, None
    if reader is None:
        return "absent", False, "", None, None
    with reader:
        state = reader.get_validation_state() or ""
        active = reader.get_active_manifest() or {}
        results = reader.get_validation_results() or {}
    failures = [f.get("code", "") for f in (results.get("activeManifest") or {}).get("failure", [])]
    signer = (active.get("signature_info") or {}).get("common_name")
    source_type = None
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                source_type = action.get("digitalSourceType") or source_type
    trusted = state == "Trusted"
    integrity_failures = [f for f in failures if f != "signingCredential.untrusted"]
    if state in ("Valid", "Trusted") or (state and not integrity_failures):
        detail = "signed by this engine's local CA" if trusted else "signature intact; signer outside the local CA"
        return "valid", trusted, detail, signer, source_type
    return "invalid", False, ", ".join(integrity_failures) or state, signer, source_type


def verify(path: str | os.PathLike, *, keys_folder: str | os.PathLike | None = None,
           watermark: Watermark | None = None) -> Verification:
    """Check ``path`` for the label, our watermark and a C2PA manifest (any c2pa file type; the
    label and watermark are read from images only). The local CA in ``keys_folder`` (default
    ``$CROSSREC_HOME/keys``) is the trust anchor; if it does not exist nothing is created."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    folder = Path(keys_folder).expanduser() if keys_folder is not None else crossrec_home() / "keys"
    keys = SigningKeys(folder) if (folder / "ca.pem").is_file() else None
    label, sources = False, []
    wm_id, confidence = None, None
    try:
        image = open_rgb(path, "path")
    except ImageDecodeError:
        image = None
    if image is not None:
        label, sources = _read_label(path)
        reading = (watermark or default_watermark()).read(image)
        wm_id, confidence = reading.payload_id, round(reading.confidence, 3)
    manifest, trusted, detail, signer, source_type = _read_manifest(path, keys)
    if source_type == DIGITAL_SOURCE_TYPE and manifest == "valid":
        label, sources = True, sources + ["c2pa"]
    return Verification(str(path), label, tuple(sources), wm_id, confidence, manifest, trusted, detail, signer,
                        source_type)


_DEFAULT_WATERMARK: Watermark | None = None


def default_watermark() -> Watermark:
    global _DEFAULT_WATERMARK
    if _DEFAULT_WATERMARK is None:
        _DEFAULT_WATERMARK = Watermark()
    return _DEFAULT_WATERMARK


# -- benchmark ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WatermarkBenchmark:
    """Recovery of the exact payload after JPEG ``quality`` and a ``scale`` resize, on ``n_marked``
    generated images, and detections of any payload on ``n_real`` unmarked real photos, at the
    same decision rule (the 32-bit check must match)."""

    n_marked: int
    recovered: int
    recovered_rate: float
    n_real: int
    false_positives: int
    quality: int
    scale: float
    mean_psnr_db: float
    embed_s: float
    read_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attack(image: Image.Image, quality: int, scale: float) -> Image.Image:
    w, h = image.size
    resized = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    resized.save(buf, "JPEG", quality=int(quality))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def watermark_benchmark(marked_sources: Sequence[ImageInput], real_photos: Sequence[ImageInput], *,
                        quality: int = 85, scale: float = 0.9, seed: int = 0,
                        watermark: Watermark | None = None, progress: bool = False) -> WatermarkBenchmark:
    """Embed a random payload in each of ``marked_sources`` (generated posters), re-encode as JPEG
    at ``quality`` after resizing by ``scale``, and count exact recoveries; then read every image
    of ``real_photos`` (unmarked) and count any detection."""
    import time

    from tqdm import tqdm

    if not marked_sources:
        raise ValueError("marked_sources: empty; the benchmark needs at least one image to mark")
    if not 1 <= int(quality) <= 100 or not 0.1 <= float(scale) <= 4.0:
        raise ValueError(f"quality={quality!r} must be in 1..100 and scale={scale!r} in [0.1, 4]")
    wm = watermark or default_watermark()
    rng = np.random.default_rng(seed)
    recovered, psnrs, t_embed, t_read = 0, [], 0.0, 0.0
    for i, source in enumerate(tqdm(marked_sources, desc="watermark: marked", disable=not progress)):
        original = open_rgb(source, f"marked_sources[{i}]")
        payload = int(rng.integers(0, 2 ** 32))
        t0 = time.perf_counter()
        marked = wm.embed(original, payload)
        t_embed += time.perf_counter() - t0
        mse = float(np.mean((np.asarray(marked, np.float64) - np.asarray(original, np.float64)) ** 2))
        psnrs.append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
        attacked = _attack(marked, quality, scale)
        t0 = time.perf_counter()
        recovered += wm.read(attacked).payload_id == payload
        t_read += time.perf_counter() - t0
    false_positives = 0
    for i, photo in enumerate(tqdm(real_photos, desc="watermark: real photos", disable=not progress)):
        false_positives += wm.read(open_rgb(photo, f"real_photos[{i}]")).payload_id is not None
    n = len(marked_sources)
    return WatermarkBenchmark(n, recovered, recovered / n, len(real_photos), false_positives, int(quality), float(scale),
                              round(float(np.mean(psnrs)), 2), round(t_embed / n, 4), round(t_read / n, 4))
