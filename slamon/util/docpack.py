"""Policy documents as stored: packed with zlib and a fixed preset dictionary.

A one-target document is ~1.4 KB of canonical JSON, kept per open policy and per closed
period; a row over ~1 KB takes a whole overflow page in SQLite. Pure: the SLA core packs
a document where it is made, the store reads it back.
"""

from __future__ import annotations

import base64
import zlib

from slamon.util.keccak import hashes_to

#: zlib's preset dictionary for stored policy documents: one with every key and
#: default of an HTTP target. Stored documents decompress with it, so it never changes
#: (another one would be "z2:").
_DICT_1 = (
    '{"accounting":{"maintenance":"count","no_data":"exclude","version":1},"composite":fals'
    'e,"evidence_resolution":3600,"latency_threshold_ms":null,"maintenance_windows":[],"min'
    '_valid_samples":0,"objective_ppm":999000,"period":{"kind":"monthly","timezone":"UTC"},'
    '"schema":"slamon.sla-policy/2","sla_id":"0x0000000000000000000000000000000000000000000'
    '000000000000000000000","sli":"availability","target_specs":[{"id":"web","interval":"30'
    '.0","kind":"http","spec":{"body":null,"body_contains":[],"body_limit":1048576,"body_ma'
    'tches":[],"body_not_matches":[],"ca_file":false,"cert_file":null,"follow_redirects":tr'
    'ue,"fresh_connection":true,"header_matches":[],"headers":[],"http2":false,"ip_family":'
    '"any","json_equals":[],"key_file":null,"max_body_size":null,"max_redirects":10,"max_re'
    'sponse_time":null,"method":"GET","min_cert_validity":null,"proxy":null,"tls_verify":tr'
    'ue,"url":"https://","valid_http_versions":[],"valid_status_codes":[200,201,202,203,204'
    ',205,206,207,208,209,210,211,212,213,214,215,216,217,218,219,220,221,222,223,224,225,2'
    '26,227,228,229,230,231,232,233,234,235,236,237,238,239,240,241,242,243,244,245,246,247'
    ',248,249,250,251,252,253,254,255,256,257,258,259,260,261,262,263,264,265,266,267,268,2'
    '69,270,271,272,273,274,275,276,277,278,279,280,281,282,283,284,285,286,287,288,289,290'
    ',291,292,293,294,295,296,297,298,299]},"timeout":"10.0"}],"targets":["web"]}'
).encode("ascii")


def pack_document(text: str) -> str:
    """A policy document as stored: "z1:" + base64 of zlib with `_DICT_1`. Target
    definitions with every default are ~1.4 KB of JSON per target, kept per open policy
    and per closed period; a row over ~1 KB takes a whole overflow page in SQLite, and
    with the dictionary a one-target document packs to ~80 bytes."""
    packer = zlib.compressobj(9, zdict=_DICT_1)
    packed = packer.compress(text.encode()) + packer.flush()
    return "z1:" + base64.b64encode(packed).decode("ascii")


def unpack_document(packed: object) -> str | None:
    """`pack_document`'s text back; None for anything it did not make."""
    if not isinstance(packed, str) or not packed.startswith("z1:"):
        return None
    try:
        unpacker = zlib.decompressobj(zdict=_DICT_1)
        raw = base64.b64decode(packed[3:], validate=True)
        text = unpacker.decompress(raw) + unpacker.flush()
        return text.decode() if unpacker.eof and not unpacker.unused_data else None
    except (ValueError, zlib.error):
        return None


def kept_document(packed: object, digest: bytes) -> str | None:
    """A stored (packed) policy document, if it is the one `digest` commits to: one that
    does not hash to it is not the document the period was judged by."""
    text = unpack_document(packed)
    return text if text is not None and hashes_to(text, digest) else None
