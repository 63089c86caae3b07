"""The download URL policy: which URLs img2dataset may fetch. Pure: no test here touches the network."""
import random

import pyarrow as pa
import pytest

from ticlip_core.data.url_policy import REFUSAL_REASONS, Refusal, UrlPolicy, refusal, refusal_codes, refusals

STRICT, OPEN = UrlPolicy(), UrlPolicy(allow_private_hosts=True)


def reason(url, policy=STRICT):
    found = refusal(url, policy)
    return found.reason if found else None


@pytest.mark.parametrize("url", [
    "http://example.com/a.jpg", "https://farm1.staticflickr.com/2/3_4.jpg", "HTTPS://I.REDD.IT/abc.jpg",
    "HtTp://example.com:8080/a.jpg?x=1#f", "http://example.com:/a.jpg", "http://user:pw@example.com/a.jpg",
    "https://8.8.8.8/a.jpg", "http://[2001:4860:4860::8888]:443/a.jpg", "http://example.com./a.jpg",
    "  https://example.org/with-spaces-around.jpg \n", "http://xn--bcher-kva.example/a.jpg",
    "http://bücher.example/a.jpg", "http://my_host.example.com/a.jpg", "http://[::ffff:8.8.8.8]/a.jpg",
])
def test_public_http_urls_pass(url):
    assert refusal(url) is None


@pytest.mark.parametrize("url, scheme", [
    ("file:///etc/passwd", "file"), ("FILE:///etc/passwd", "file"), ("ftp://ftp.example.com/a.jpg", "ftp"),
    ("data:image/png;base64,iVBORw0KGgo=", "data"), ("gopher://example.com/", "gopher"),
    ("javascript:alert(1)", "javascript"), ("jar:http://example.com/a!/b", "jar"),
])
def test_other_schemes_are_refused(url, scheme):
    found = refusal(url, OPEN)               # refused even with private hosts allowed
    assert found == Refusal("url_scheme_refused", f"scheme '{scheme}' is not one of http, https")


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1/a.jpg", "loopback"), ("http://127.5.6.7:8080/a.jpg", "loopback"),
    ("HTTP://127.0.0.1/a.jpg", "loopback"), ("http://user@127.0.0.1/", "loopback"),
    ("http://user:secret@127.0.0.1:9/", "loopback"), ("http://example.com@127.0.0.1/", "loopback"),
    ("http://[::1]/a.jpg", "loopback"), ("http://[0:0:0:0:0:0:0:1]:80/", "loopback"),
    ("http://10.0.0.1/", "private"), ("http://172.16.5.4/", "private"), ("http://192.168.1.1:8080/x", "private"),
    ("http://[fc00::1]/", "private"), ("http://[fd12:3456:789a::1]/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"), ("http://224.0.0.1/", "multicast"), ("http://[ff02::1]/", "multicast"),
    ("http://0.0.0.0/", "unspecified"), ("http://[::]/", "unspecified"), ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "shared"), ("http://[fec0::1]/", "site-local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"), ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::a00:1]/", "private"), ("http://[2002:a9fe:a9fe::]/", "link-local"),
    # the C resolver's other IPv4 spellings, escapes and Unicode forms of the same addresses
    ("http://127.1/", "loopback"), ("http://2130706433/", "loopback"), ("http://0x7f000001/", "loopback"),
    ("http://017700000001/", "loopback"), ("http://0x7f.0.0.1/", "loopback"), ("http://127.000.000.001/", "loopback"),
    ("http://127.0.0.1./", "loopback"), ("http://127%2E0%2E0%2E1/", "loopback"), ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "loopback"), ("http://169.254.169.254\u3002/", "link-local"),
])
def test_non_public_addresses_are_refused(url, kind):
    found = refusal(url)
    assert found.reason == "url_host_refused" and f"({kind}" in found.detail, found
    assert refusal(url, OPEN) is None       # the switch the loopback tests use


@pytest.mark.parametrize("url, words", [
    ("http://localhost/a.jpg", "loopback name"), ("http://LOCALHOST:8000/", "loopback name"),
    ("http://localhost./", "loopback name"), ("http://user@localhost/", "loopback name"),
    ("http://ip6-localhost/", "loopback name"), ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "loopback name"),
    ("http://api.localhost/", "*.localhost"), ("http://printer.local/", "*.local"),
    ("http://metadata.google.internal/computeMetadata/v1/", "*.internal"), ("http://nas.home.arpa/", "*.home.arpa"),
    ("http://intranet/a.jpg", "single-label"), ("http://metadata/", "single-label"),
])
def test_local_names_are_refused(url, words):
    found = refusal(url)
    assert found.reason == "url_host_refused" and words in found.detail, found
    assert refusal(url, OPEN) is None


@pytest.mark.parametrize("url", [
    "", "   ", "just words", "//example.com/a.jpg", "example.com/a.jpg", "http:example.com/a.jpg", "http:/example.com",
    "http://", "http:///a.jpg", "http://:80/", "http://user@/", "http://[::1/", "http://[127.0.0.1]/",
    "http://[::1]x/", "http://[::1]:http/", "http://a b.com/", "http://a\tb.com/", "http://exa\x00mple.com/",
    "http://example.com\\@127.0.0.1/", "http://example.com:99999/", "http://example.com:8o/",
    "http://::1/", "http://exa$mple.com/", "http://a..b/", "http://999.1.1.1/", "http://1.2.3.4.5/",
    "http://%ff/", "http://127.0.0.1%3A80/", "http://evil.com%40127.0.0.1/", "http://" + "a" * 70 + ".\u00e9.com/",
    "http:\\\\127.0.0.1\\a.jpg", "1http://example.com/",
])
def test_malformed_urls_get_a_reason_not_an_exception(url):
    found = refusal(url, OPEN)
    assert found is not None and found.reason == "url_malformed", (url, found)


def test_random_strings_never_crash_and_always_match_the_one_by_one_verdict():
    rng = random.Random(0)
    alphabet = "htps:/[]@%.:0123456789abcdefx \t\\#?\u3002\uff11\u00e9-_"
    urls = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)]
    urls += ["http://" + u for u in urls[:1500]] + [None, None]
    batch = refusals(urls, STRICT)
    assert batch == [refusal(u, STRICT) for u in urls]
    assert all(v is None or v.reason in REFUSAL_REASONS for v in batch)
    assert batch[-1] is None and any(v is None for v in batch[3000:4500])   # some random hosts pass


def test_batch_verdicts_share_work_per_host_and_keep_order():
    urls = pa.chunked_array([[f"https://example.org/{i}.jpg" for i in range(50)] + [None],
                             ["http://127.0.0.1/x", "https://example.org/last.jpg"]])
    codes, verdicts = refusal_codes(urls)
    assert len(codes) == 53 and codes[50] == -1 and len(verdicts) == 2    # one verdict per scheme+host
    got = refusals(urls)
    assert got[:50] == [None] * 50 and got[50] is None and got[52] is None
    assert got[51].reason == "url_host_refused"
    assert refusals([]) == []


def test_names_are_not_resolved_unless_asked():
    def no_dns(name):
        raise AssertionError(f"resolved {name}")
    assert refusal("http://internal.example.com/", UrlPolicy(resolver=no_dns)) is None


def test_resolving_names_refuses_private_answers_and_failures():
    calls = []

    def fake(name):
        calls.append(name)
        table = {"cdn.example.com": ["93.184.216.34", "2606:2800:220:1::248"], "wiki.corp.example": ["10.2.3.4"],
                 "v6.example.com": ["fe80::1%eth0"], "odd.example.com": ["not-an-ip"]}
        if name not in table:
            raise OSError("Name or service not known")
        return table[name]

    policy = UrlPolicy(resolve_hostnames=True, resolver=fake)
    urls = ["https://cdn.example.com/a.jpg", "https://CDN.example.com/b.jpg", "http://wiki.corp.example/c.jpg",
            "http://v6.example.com/", "http://gone.example.com/", "http://odd.example.com/", "http://8.8.8.8/",
            "http://localhost/"]
    got = refusals(urls, policy)
    assert got[0] is None and got[1] is None and got[6] is None
    assert got[2].reason == "url_host_refused" and "10.2.3.4" in got[2].detail and "private" in got[2].detail
    assert got[3].reason == "url_host_refused" and "link-local" in got[3].detail
    assert got[4].reason == "url_host_unresolved" and "Name or service not known" in got[4].detail
    assert got[5].reason == "url_host_unresolved"
    assert got[7].reason == "url_host_refused"                     # decided without DNS
    assert sorted(calls) == sorted(set(calls)) == ["cdn.example.com", "gone.example.com", "odd.example.com",
                                                    "v6.example.com", "wiki.corp.example"]   # once per name
    # allowing private hosts makes resolving pointless: nothing is looked up
    calls.clear()
    assert refusals(urls, UrlPolicy(resolve_hostnames=True, allow_private_hosts=True, resolver=fake)) == [None] * 8
    assert calls == []


def test_policy_from_the_config_options():
    assert UrlPolicy.from_options(None) == UrlPolicy.from_options({}) == STRICT
    options = {"allowed_schemes": ["HTTPS"], "allow_private_hosts": True, "resolve_hostnames": False,
               "image_size": 256, "processes_count": 4}                    # other download keys are ignored
    policy = UrlPolicy.from_options(options)
    assert policy.as_dict() == {"allowed_schemes": ["https"], "allow_private_hosts": True, "resolve_hostnames": False}
    assert reason("http://example.com/", policy) == "url_scheme_refused"
    assert reason("https://127.0.0.1/", policy) is None
    assert str(refusal("ftp://x.example/")) == "url_scheme_refused: scheme 'ftp' is not one of http, https"
