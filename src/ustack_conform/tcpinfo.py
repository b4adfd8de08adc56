"""TCP_INFO for scripts: ``%{ assert tcpi_... }%`` blocks and ``getsockopt(TCP_INFO)``.

packetdrill runs a ``%{ }%`` block as Python with the socket's
``struct tcp_info`` (Linux's, ``linux/tcp.h``) as ``tcpi_*`` variables.
The runner evaluates the ``assert`` statements of such a block itself,
over a closed set of expressions (names, integers, comparisons, ``& | ^ ~``,
``and or not``, arithmetic): nothing of the script is executed as code.

``info(sock)`` gives the fields ustack can tell.  ``tcpi_state`` is the
``State`` (compared with the ``TCPI_*`` names, aliases as Linux writes them:
``TCPI_SYN_RECV``, ``TCPI_FIN_WAIT1`` ...); ``tcpi_options`` is Linux's
bit set (``TCPI_OPT_TIMESTAMPS`` 1, ``TCPI_OPT_SACK`` 2, ``TCPI_OPT_WSCALE``
4, ``TCPI_OPT_ECN`` 8) of the options the connection negotiated; times are
in microseconds as in ``struct tcp_info``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State

__all__ = ["CONSTANTS", "TCPI_OPT", "AssertFailed", "UnsupportedCode", "check_block", "info"]

TCPI_OPT: dict[str, int] = {
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
    "TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32,
}
_STATE_ALIASES = {"SYN_RECV": "SYN_RECEIVED", "FIN_WAIT1": "FIN_WAIT_1",
                  "FIN_WAIT2": "FIN_WAIT_2", "CLOSE": "CLOSED"}
#: The names a block may use besides the tcpi_* fields.
CONSTANTS: dict[str, object] = {
    **TCPI_OPT,
    **{f"TCPI_{s.name}": s for s in State},
    **{f"TCPI_{alias}": State[name] for alias, name in _STATE_ALIASES.items()},
}


class UnsupportedCode(Exception):
    """A statement or name the runner does not evaluate (the script is in error)."""


class AssertFailed(Exception):
    """An assert of the block was false: the message says what was found."""


def info(sock: TcpSocket | None, state: State | None) -> dict[str, object]:
    """The ``tcpi_*`` fields: the state alone without a connection (a listener)."""
    out: dict[str, object] = {"tcpi_state": state}
    if sock is None:
        return out
    tp = sock.conn
    cfg = tp.cfg
    opts = 0
    if tp.ts_ok:
        opts |= TCPI_OPT["TCPI_OPT_TIMESTAMPS"]
    if tp.sack_ok:
        opts |= TCPI_OPT["TCPI_OPT_SACK"]
    if cfg.window_scaling and (tp.snd_wscale or tp.rcv_wscale):
        # Scaling is in effect when both SYNs carried the option (RFC 7323
        # 2.2); ustack zeroes both shifts otherwise.
        opts |= TCPI_OPT["TCPI_OPT_WSCALE"]
    st = tp.stats()
    out.update({
        "tcpi_options": opts,
        "tcpi_snd_wscale": tp.snd_wscale,
        "tcpi_rcv_wscale": tp.rcv_wscale,
        "tcpi_snd_mss": tp.mss,
        "tcpi_rcv_mss": tp.mss,
        "tcpi_rto": _usec(st["rto"]),
        "tcpi_rtt": _usec(st["srtt"]),
        "tcpi_rttvar": _usec(st["rttvar"]),
        "tcpi_snd_cwnd": _int(st["cwnd"]) // max(1, tp.mss),
        "tcpi_snd_ssthresh": _int(st["ssthresh"]) // max(1, tp.mss),
        "tcpi_total_retrans": _int(st["retransmits"]),
        "tcpi_unacked": _int(st["unacked"]),
    })
    return out


def _usec(v: object) -> int:
    return round(float(v) * 1e6) if isinstance(v, (int, float)) else 0


def _int(v: object) -> int:
    return int(v) if isinstance(v, (int, float)) else 0


_BINARY: dict[type, Callable[[Any, Any], object]] = {
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_COMPARE: dict[type, Callable[[Any, Any], object]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def _eval(node: ast.expr, names: Mapping[str, object]) -> object:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise UnsupportedCode(f"unknown name {node.id}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not v
        if isinstance(node.op, ast.Invert) and isinstance(v, int):
            return ~v
        if isinstance(node.op, ast.USub) and isinstance(v, int):
            return -v
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, names) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            fn = _COMPARE.get(type(op))
            if fn is None:
                break
            right = _eval(right_node, names)
            if not fn(left, right):
                return False
            left = right
        else:
            return True
    raise UnsupportedCode(f"unsupported expression {ast.unparse(node)!r}")


def _show(v: object) -> str:
    return f"TCPI_{v.name}" if isinstance(v, State) else (
        "no socket" if v is None else str(v))


def check_block(code: str, names: Mapping[str, object]) -> None:
    """Check every ``assert`` of a ``%{ }%`` block against ``names`` (the ``tcpi_*`` fields).

    Raises UnsupportedCode for anything but assert statements over the
    supported expressions (the script is in error), AssertFailed for a
    false assert.
    """
    try:
        tree = ast.parse(code.strip())
    except SyntaxError as e:
        raise UnsupportedCode(f"not Python: {e.msg}") from None
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assert):
            raise UnsupportedCode(f"unsupported code block statement {ast.unparse(stmt)!r} "
                                  "(only assert over tcpi_* fields)")
        if _eval(stmt.test, names):
            continue
        t = stmt.test
        if (isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq)
                and isinstance(t.left, ast.Name)):
            want = _eval(t.comparators[0], names)
            raise AssertFailed(f"{t.left.id} is {_show(names.get(t.left.id))}, expected "
                               f"{_show(want)}")
        used = sorted({n.id for n in ast.walk(t) if isinstance(n, ast.Name) and n.id in names})
        found = ", ".join(f"{n}={_show(names[n])}" for n in used)
        raise AssertFailed(f"assert {ast.unparse(t)} is false ({found})")
