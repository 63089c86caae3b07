"""Which image URLs the download may fetch: a pure check applied when the manifest is built.

img2dataset fetches every URL it is given with ``urllib``, which also reads ``file://``,
``ftp://`` and ``data:`` URLs and connects to any address, the machine itself (loopback),
its network (private, link-local: ``169.254.169.254`` is the cloud metadata service) included.
A metadata table is data from elsewhere, so by default only ``http``/``https`` URLs to public
hosts are downloaded; ``build_manifest`` quarantines every other row with its reason.

What is checked (by default; ``UrlPolicy`` switches):

- the scheme (any case): ``allowed_schemes`` (``http``, ``https``);
- the URL has a host (``//authority``) that parses the way ``urllib`` would connect to it:
  no whitespace, control characters or backslashes in it, a numeric port <= 65535, a bracketed
  IPv6 literal, percent-escapes decoded and Unicode names mapped with IDNA (as the socket
  layer does: fullwidth ``１２７.０.０.１`` is 127.0.0.1); otherwise ``url_malformed``;
- IP literals, including the forms the C resolver accepts (``127.1``, ``2130706433``,
  ``0x7f000001``), IPv4-mapped and NAT64 IPv6 and the IPv4 inside 6to4: loopback, private
  (RFC 1918, unique-local ``fc00::/7``), shared (``100.64/10``), link-local (``169.254/16``,
  ``fe80::/10``), site-local, multicast, unspecified and reserved addresses are refused
  unless ``allow_private_hosts``;
- host names: ``localhost`` and ``*.localhost``, the usual ``/etc/hosts`` loopback names,
  single-label names (``intranet``: only the local search domain or ``/etc/hosts`` resolves
  them) and the private-use suffixes ``.local``, ``.internal``, ``.localdomain``,
  ``.home.arpa`` are refused unless ``allow_private_hosts``.

Limits (documented, not hidden): other host names are **not resolved** unless
``resolve_hostnames`` is on, since DNS at prepare time is slow for millions of hosts and its
answer can change by download time; so a public name whose DNS points at a private address
passes by default. With ``resolve_hostnames`` each distinct name is resolved once (in
threads) and refused if any address it resolves to is not public, or if it does not resolve
(``url_host_unresolved``: the answer depends on the DNS of the day, so the manifest is then
not reproducible). Either way only the URLs in the table are checked: img2dataset's
``urllib`` follows HTTP redirects (up to 10, to ``http``, ``https`` or ``ftp`` URLs on any
host) and resolves names again when it connects, so a public host can still redirect the
fetch elsewhere. Where that matters, run the download job where private addresses are not
reachable (a network namespace or an egress firewall).
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticlip_core.data.text_bytes import string_buffers, trim_whitespace

# Quarantine reasons, in the order build_manifest reports them.
REFUSAL_REASONS = ("url_malformed", "url_scheme_refused", "url_host_refused", "url_host_unresolved")
# The options (keys of ``data.download``) that make a policy.
POLICY_KEYS = ("allowed_schemes", "allow_private_hosts", "resolve_hostnames")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_BAD_AUTHORITY_CHAR = re.compile(r"[\x00-\x20\x7f\\]")
_NAME = re.compile(r"[a-z0-9_\-]+(\.[a-z0-9_\-]+)*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# scheme and authority: everything the verdict depends on (RFC 3986 appendix B; urllib and
# urlsplit split the authority at the same characters). url_prefixes finds this group in NumPy.
_PREFIX = r"(?s)^(?P<prefix>[^/?#]*(?://[^/?#]*)?)"
_BLOCK = 1 << 15
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class Refusal(NamedTuple):
    """Why a URL is not downloaded: ``reason`` (one of ``REFUSAL_REASONS``) and a sentence."""
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class UrlPolicy:
    """What may be downloaded; the defaults are the safe ones (see the module docstring).

    ``resolver`` maps a host name to its addresses (default: ``socket.getaddrinfo``); it is
    only called with ``resolve_hostnames`` and exists so tests need no DNS.
    """
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_private_hosts: bool = False
    resolve_hostnames: bool = False
    resolve_threads: int = 32
    resolver: Callable[[str], Iterable[str]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        schemes = (self.allowed_schemes,) if isinstance(self.allowed_schemes, str) else self.allowed_schemes
        object.__setattr__(self, "allowed_schemes", tuple(s.lower() for s in schemes))

    @classmethod
    def from_options(cls, options: Mapping | None, **overrides) -> "UrlPolicy":
        """The policy from ``data.download`` options (or the ``url_policy`` param): only
        ``POLICY_KEYS`` are read, missing ones take the defaults."""
        values = {k: options[k] for k in POLICY_KEYS if options and options.get(k) is not None}
        return cls(**values, **overrides)

    def as_dict(self) -> dict:
        """The policy as plain data (for the summary)."""
        return {"allowed_schemes": list(self.allowed_schemes), "allow_private_hosts": self.allow_private_hosts,
                "resolve_hostnames": self.resolve_hostnames}


def refusal(url: str | None, policy: UrlPolicy | None = None) -> Refusal | None:
    """Why ``url`` may not be downloaded under ``policy`` (default ``UrlPolicy()``), or None.

    Never raises for a bad URL: a URL that does not parse is ``url_malformed``. ``None`` (a
    missing URL, which the manifest reports as ``missing_url``) gives None.
    """
    return refusals([url], policy)[0]


def refusals(urls: Sequence[str | None] | pa.Array, policy: UrlPolicy | None = None) -> list[Refusal | None]:
    """``refusal`` of each URL, in order; the work is done once per distinct scheme and host,
    and each distinct host name is resolved once (only with ``resolve_hostnames``)."""
    codes, verdicts = refusal_codes(urls, policy)
    return [None if c < 0 else verdicts[c] for c in codes.tolist()]


def refusal_codes(urls: Sequence[str | None] | pa.Array | pa.ChunkedArray,
                  policy: UrlPolicy | None = None) -> tuple[np.ndarray, list[Refusal | None]]:
    """``refusals`` without a Python object per row: ``(codes, verdicts)``, the verdict of row
    ``i`` being ``verdicts[codes[i]]`` (``codes[i] == -1`` for a missing URL)."""
    policy = policy or UrlPolicy()
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    arr = urls if isinstance(urls, pa.Array) else pa.array([None if u is None else str(u) for u in urls],
                                                           type=pa.large_string())
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.large_string())
    encoded = pc.dictionary_encode(url_prefixes(arr))
    verdicts = [_static_verdict(p, policy) for p in encoded.dictionary.to_pylist()]
    names = sorted({v for v in verdicts if isinstance(v, str)})
    addresses = _resolve_all(names, policy) if names and policy.resolve_hostnames else {}
    verdicts = [_name_verdict(v, addresses) if isinstance(v, str) else v for v in verdicts]
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64), verdicts


def url_prefixes(urls: pa.Array) -> pa.Array:
    """The part of each URL the verdict depends on, ``_PREFIX``'s ``prefix`` group of the URL
    without surrounding whitespace (null for a null URL), found byte by byte in NumPy.

    That group is everything before the first ``/``, ``?`` or ``#``, and, when that character
    starts ``//``, also the authority after it, up to the next of those characters. They are
    ASCII, and a UTF-8 multi-byte character never contains an ASCII byte, so searching the
    bytes finds the characters the regex finds.
    """
    arr = trim_whitespace(urls)
    if len(arr) == 0:
        return pa.array([], pa.large_string())
    starts, ends, data = string_buffers(arr)
    cut = np.empty(len(arr), np.int64)
    for lo in range(0, len(arr), _BLOCK):   # blocks small enough for the temporaries to stay in cache
        s, e = starts[lo:lo + _BLOCK], ends[lo:lo + _BLOCK]
        base, top = int(s[0]), int(e[-1])
        chunk = data[base:top]
        special = chunk == ord("/")
        special |= chunk == ord("?")
        special |= chunk == ord("#")
        at = np.append(np.flatnonzero(special) + base, top)   # positions of / ? #, then a sentinel
        first = np.minimum(at[np.searchsorted(at, s)], e)
        slashes = np.flatnonzero(first + 1 < e)
        slashes = slashes[(data[first[slashes]] == ord("/")) & (data[first[slashes] + 1] == ord("/"))]
        first[slashes] = np.minimum(at[np.searchsorted(at, first[slashes] + 2)], e[slashes])
        cut[lo:lo + _BLOCK] = first
    # value 2i of `halves` is URL i's prefix, value 2i+1 the rest of it: the same bytes, no copy
    bounds = np.empty(2 * len(arr) + 1, np.int64)
    bounds[0::2] = np.append(starts, ends[-1])
    bounds[1::2] = cut
    data_buffer = arr.buffers()[2] or pa.py_buffer(b"")
    halves = pa.LargeStringArray.from_buffers(2 * len(arr), pa.py_buffer(bounds), data_buffer)
    nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return halves.take(pa.array(np.arange(0, 2 * len(arr), 2), mask=nulls))


def _static_verdict(prefix: str, policy: UrlPolicy) -> Refusal | str | None:
    """The verdict on ``scheme:[//authority]`` without DNS: a Refusal, None (allowed), or the
    host name (a str) when it is left to ``_name_verdict``."""
    m = _SCHEME.match(prefix)
    if not m:
        return Refusal("url_malformed", "no scheme (expected e.g. https://host/path)")
    scheme = m.group(1).lower()
    if scheme not in policy.allowed_schemes:
        return Refusal("url_scheme_refused", f"scheme '{scheme}' is not one of {', '.join(policy.allowed_schemes)}")
    rest = prefix[m.end():]
    if not rest.startswith("//"):
        return Refusal("url_malformed", f"no host (a {scheme} URL needs '{scheme}://host')")
    host = _parse_authority(rest[2:])
    if isinstance(host, Refusal):
        return host
    if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        kind = _address_class(host)
        if kind is None or policy.allow_private_hosts:
            return None
        return Refusal("url_host_refused", f"host {host} is not a public address ({kind})")
    kind = _name_class(host)
    if kind is not None:
        return None if policy.allow_private_hosts else Refusal("url_host_refused", f"host '{host}' is {kind}")
    return host if policy.resolve_hostnames and not policy.allow_private_hosts else None


def _parse_authority(authority: str) -> Refusal | ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    """``[userinfo@]host[:port]`` -> the address or the normalised (IDNA, lower-case) name."""
    def bad(why: str) -> Refusal:
        return Refusal("url_malformed", f"host '{authority}': {why}")

    if _BAD_AUTHORITY_CHAR.search(authority):
        return bad("whitespace, a control character or a backslash")
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return bad("unclosed '['")
        host, port = hostport[1:end], hostport[end + 1:]
        if port and not port.startswith(":"):
            return bad("text after ']'")
        port = port[1:]
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon:
            host, port = hostport, ""
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return bad(f"port '{port}' is not a number up to 65535")
    if "%" in host:  # urllib unquotes the host before it connects
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError:
            return bad("a percent-escape that is not UTF-8")
    if hostport.startswith("["):
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return bad("not an IPv6 address in brackets")
    if not host:
        return bad("empty host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # what the socket layer resolves
        except UnicodeError:
            return bad("not a valid international domain name")
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not _NAME.fullmatch(host):
        return bad("not a host name or IP address")
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    last = host.rsplit(".", 1)[-1]
    if _NUMERIC_LABEL.fullmatch(last):
        try:  # the C resolver's IPv4 forms: 127.1, 2130706433, 0x7f000001, 017700000001
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return bad("a numeric host that is not an IPv4 address")
    return host


def _address_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not public (e.g. ``loopback``), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            kind = _address_class(embedded)
            return f"{kind}, IPv4 {embedded} inside IPv6" if kind else None
        if ip.sixtofour is not None and _address_class(ip.sixtofour):
            return f"{_address_class(ip.sixtofour)}, IPv4 {ip.sixtofour} inside 6to4"
        if ip.is_site_local:
            return "site-local"
    for kind in ("unspecified", "loopback", "link_local", "multicast"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


def _name_class(host: str) -> str | None:
    """Why a host name points inside the machine or its network, or None."""
    if host in LOOPBACK_NAMES:
        return "a loopback name"
    for suffix in PRIVATE_SUFFIXES:
        if host.endswith(suffix):
            return f"a private-use name (*{suffix})"
    if "." not in host:
        return "a single-label name (only the local search domain or /etc/hosts resolves it)"
    return None


def _default_resolver(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def _resolve_all(names: list[str], policy: UrlPolicy) -> dict[str, list[str] | Exception]:
    """Each name's addresses (or the error), resolved in ``policy.resolve_threads`` threads."""
    resolver = policy.resolver or _default_resolver

    def one(name: str):
        try:
            return list(resolver(name))
        except Exception as err:  # noqa: BLE001 - any failure to resolve is a verdict, not a crash
            return err

    with ThreadPoolExecutor(max_workers=max(1, min(policy.resolve_threads, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names)))


def _name_verdict(name: str, addresses: Mapping[str, list[str] | Exception]) -> Refusal | None:
    """The verdict on a host name from the addresses it resolved to."""
    if name not in addresses:
        return None
    found = addresses[name]
    if isinstance(found, Exception) or not found:
        return Refusal("url_host_unresolved", f"host '{name}' did not resolve at prepare time"
                       + (f" ({found})" if isinstance(found, Exception) else ""))
    for text in found:
        try:
            kind = _address_class(ipaddress.ip_address(text))
        except ValueError:
            return Refusal("url_host_unresolved", f"host '{name}' resolved to '{text}', not an IP address")
        if kind:
            return Refusal("url_host_refused", f"host '{name}' resolves to {text}, not a public address ({kind})")
    return None
