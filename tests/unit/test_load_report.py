"""What ``ustack load`` says: the summary and the JSON agree figure by figure
(the summary is read back here with its own parser), the --hist files, the
URL and header checks, and every command-line mistake is one line and exit
2 before any link is opened."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_load_generator import OK, Net, Scripted

from ustack import cli
from ustack.apps.load.histogram import Histogram
from ustack.apps.load.report import build, hgrm_files, summary
from ustack.apps.load.target import build_request, parse_header, parse_url
from ustack.tcp.socket import TcpSocket

_NUM = r"([0-9.]+)"


def read_summary(text: str) -> dict[str, Any]:
    """The figures of a summary, by what its lines say."""
    out: dict[str, Any] = {"errors": {}, "latency": {}}
    m = re.search(r"^  requests: (\d+) sent, (\d+) completed, (\d+) failed, (\d+) unfinished$",
                  text, re.M)
    assert m, text
    out["requests"] = [int(x) for x in m.groups()]
    m = re.search(r"^  connections: (\d+) requested, (\d+) held at most, (\d+) opened, "
                  r"(\d+) established, (\d+) closed by the server, (\d+) SYN retransmissions$",
                  text, re.M)
    assert m, text
    out["connections"] = [int(x) for x in m.groups()]
    m = re.search(rf"^  Requests/sec: {_NUM}$", text, re.M)
    assert m, text
    out["per_second"] = float(m.group(1))
    m = re.search(r"^  responses: 2xx (\d+)  3xx (\d+)  4xx (\d+)  5xx (\d+)$", text, re.M)
    assert m, text
    out["responses"] = [int(x) for x in m.groups()]
    for m in re.finditer(rf"^    (syn|connect|ttfb|ttlb) +{' +'.join([_NUM] * 6)} +(\d+)$",
                         text, re.M):
        out["latency"][m.group(1)] = [float(x) for x in m.groups()[1:7]] + [int(m.group(8))]
    for m in re.finditer(r"^    ([a-z_0-9]+) +(\d+)  \S", text, re.M):
        out["errors"][m.group(1)] = int(m.group(2))
    m = re.search(r"^  errors: (\d+|none)$", text, re.M)
    assert m, text
    out["errors_total"] = 0 if m.group(1) == "none" else int(m.group(1))
    m = re.search(r"^  open loop: (\d+) due, (\d+) sent, (\d+) late .*, (\d+) never sent$",
                  text, re.M)
    out["open_loop"] = [int(x) for x in m.groups()] if m else None
    m = re.search(rf"^  cpu: {_NUM} of one core \(user {_NUM} s, system {_NUM} s\)$", text, re.M)
    assert m, text
    out["cpu"] = [float(x) for x in m.groups()]
    return out


def assert_agree(r: dict[str, Any], text: str) -> None:
    s = read_summary(text)
    q = r["requests"]
    assert s["requests"] == [q["sent"], q["completed"], q["failed"], q["unfinished"]]
    c = r["connections"]
    assert s["connections"] == [c["requested"], c["held_max"], c["opened"], c["established"],
                                c["server_closes"], c["syn_retransmits"]]
    assert s["per_second"] == pytest.approx(q["per_second"], abs=0.005)
    assert s["responses"] == [r["responses"][k] for k in ("2xx", "3xx", "4xx", "5xx")]
    for phase, row in s["latency"].items():
        h = r["latency_us"][phase]
        names = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
        assert row[:6] == pytest.approx([h[n] / 1000 for n in names], abs=0.0005)
        assert row[6] == h["count"]
    assert set(s["latency"]) == {"syn", "connect", "ttfb", "ttlb"}
    listed = {k: v for k, v in s["errors"].items() if not k.startswith("http_")}
    assert listed == {k: v for k, v in r["errors"].items() if v}
    assert s["errors_total"] == r["errors_total"]
    for k in ("4xx", "5xx"):
        assert s["errors"].get("http_" + k, 0) == r["responses"][k]
    o = r["open_loop"]
    assert s["open_loop"] == (None if o is None else
                              [o["scheduled"], o["sent"], o["late"], o["never_sent"]])
    cpu = r["cpu"]
    assert s["cpu"] == pytest.approx([cpu["share"], cpu["user"], cpu["system"]], abs=0.005)


def test_summary_and_json_agree_on_a_run_with_errors() -> None:
    """One run with 2xx, 4xx, 5xx, resets and malformed responses."""
    net = Net(sources=3)
    srv: Scripted

    def mixed(sock: TcpSocket, n: int, now: float) -> None:
        k = n % 7
        if k == 1:
            sock.send(b"HTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n")
        elif k == 2:
            sock.send(b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n")
        elif k == 3:
            sock.send(b"HTTP/1.1 2OO OK\r\n\r\n")
        elif k == 4:
            srv.later(0.002, sock.abort)
        else:
            sock.send(OK)

    srv = Scripted(net.b, mixed)
    st = net.load(requests=300, connections=4, pipeline=2)
    r = build(st, net.gen.cfg, url="http://198.18.0.2/f", method="GET",
              cpu_user=1.234, cpu_system=0.5)
    assert r["errors"]["malformed"] and r["errors"]["reset"]
    assert r["responses"]["4xx"] and r["responses"]["5xx"]
    text = summary(r)
    assert_agree(r, text)
    assert "http_bad_status_line" in text
    assert json.loads(json.dumps(r)) == r  # all of it JSON
    per = r["sources"]
    assert [p["ip"] for p in per] == net.sources
    assert sum(p["completed"] for p in per) == r["requests"]["completed"]
    assert sum(p["errors"] for p in per) == r["errors_total"]


def test_summary_and_json_agree_on_an_open_loop() -> None:
    net = Net()
    Scripted(net.b, lambda s, n, now: s.send(OK))
    st = net.load(rate=50.0, duration=1.0, connections=2)
    r = build(st, net.gen.cfg, url="http://198.18.0.2/", method="GET", cpu_user=0.95,
              cpu_system=0.1)
    text = summary(r)
    assert_agree(r, text)
    assert r["open_loop"]["scheduled"] == 50
    assert "errors: none" in text
    assert "warning: the generator used" in text  # 1.05 s of CPU in 1 s


def test_a_summary_that_disagrees_is_caught() -> None:
    """The check itself can fail: one figure changed in the text."""
    net = Net()
    Scripted(net.b, lambda s, n, now: s.send(OK))
    st = net.load(requests=20, connections=2)
    r = build(st, net.gen.cfg, url="http://198.18.0.2/", method="GET")
    text = summary(r).replace("20 completed", "21 completed")
    with pytest.raises(AssertionError):
        assert_agree(r, text)


def test_hist_files_one_per_phase(tmp_path: Path) -> None:
    assert hgrm_files("lat.hgrm") == {p: f"lat.{p}.hgrm" for p in ("syn", "connect", "ttfb",
                                                                   "ttlb")}
    assert hgrm_files("/x/run")["ttfb"] == "/x/run.ttfb.hgrm"
    h = Histogram()
    h.record(1500)
    assert h.to_hgrm().splitlines()[0].split() == ["Value", "Percentile", "TotalCount",
                                                   "1/(1-Percentile)"]


# -- the URL, headers and request --------------------------------------------


@pytest.mark.parametrize("url, ip, port, path", [
    ("http://198.18.0.1", "198.18.0.1", 80, "/"),
    ("http://198.18.0.1:8080/a/b?x=1#frag", "198.18.0.1", 8080, "/a/b?x=1"),
    ("HTTP://198.18.0.1?q", "198.18.0.1", 80, "/?q"),
])
def test_urls_taken_apart(url: str, ip: str, port: int, path: str) -> None:
    t = parse_url(url)
    assert (t.ip, t.port, t.path) == (ip, port, path)
    assert t.host == (ip if port == 80 else f"{ip}:{port}")


@pytest.mark.parametrize("url, says", [
    ("198.18.0.1/x", "not a URL"),
    ("https://198.18.0.1/", "no TLS"),
    ("ftp://198.18.0.1/", "plain HTTP"),
    ("http://example.com/", "resolves no names"),
    ("http://198.18.0.1:0/", "1..65535"),
    ("http://198.18.0.1:99999/", "1..65535"),
    ("http://198.18.0.1:x/", "1..65535"),
    ("http://u@198.18.0.1/", "user information"),
    ("http:///x", "no host"),
    ("http://198.18.0.1/a b", "percent-encode"),
    ("http://198.18.00.1/", "IPv4"),
])
def test_bad_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_url(url)


def test_request_bytes_and_headers() -> None:
    t = parse_url("http://198.18.0.1:8080/p")
    req = build_request(t, "GET", [parse_header("X-A:  1 "), parse_header("user-agent: me")],
                        close=True)
    assert req == (b"GET /p HTTP/1.1\r\nHost: 198.18.0.1:8080\r\nX-A: 1\r\n"
                   b"user-agent: me\r\nConnection: close\r\n\r\n")
    req = build_request(t, "POST", body=b"abc")
    assert req.endswith(b"Content-Length: 3\r\n\r\nabc")
    for bad in ("NoColon", "Bad Name: x", "X: a\x01b", "Content-Length: 3"):
        with pytest.raises(ValueError):
            parse_header(bad)
    with pytest.raises(ValueError, match="no body"):
        build_request(t, "GET", body=b"x")


# -- the command line: one line, exit 2, before the link ------------------------

LINK = ["--link", "tap:nolink0", "--ip", "198.18.0.2/24"]


@pytest.mark.parametrize("args, says", [
    (["https://198.18.0.1/"], "no TLS"),
    (["http://name/"], "resolves no names"),
    (["http://198.18.0.1/", "-c", "0"], "-c 0"),
    (["http://198.18.0.1/", "-n", "0"], "-n 0"),
    (["http://198.18.0.1/", "-d", "-1"], "-d -1"),
    (["http://198.18.0.1/", "-d", "inf"], "finite"),
    (["http://198.18.0.1/", "--rate", "0"], "--rate"),
    (["http://198.18.0.1/", "--pipeline", "0"], "--pipeline"),
    (["http://198.18.0.1/", "--close", "--pipeline", "2"], "no --pipeline"),
    (["http://198.18.0.1/", "--timeout", "0"], "--timeout"),
    (["http://198.18.0.1/", "-H", "bad"], "not a header"),
    (["http://198.18.0.1/", "--body", "/nonexistent/x", "--method", "POST"], "--body"),
    (["http://10.0.0.1/"], "no route"),
    (["http://198.18.0.2/"], "our own addresses"),
    (["http://198.18.0.5/", "--sources", "10"], "our own addresses"),
    (["http://198.18.0.1/", "--method", "PUT"], "invalid choice"),
    (["http://198.18.0.1/", "-c", "x"], "invalid int"),
])
def test_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                           args: list[str], says: str) -> None:
    assert cli.main(["load", *args[:1], *LINK, *args[1:]]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("ustack load: ") and err.count("\n") == 1, err
    assert says in err, err


def test_body_only_with_post(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "b"
    body.write_bytes(b"x")
    assert cli.main(["load", "http://198.18.0.1/", *LINK, "--body", str(body)]) == 2
    assert "--method POST" in capsys.readouterr().err


def test_help_lists_load(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "load" in capsys.readouterr().out
