"""A local HTTP server that speaks J-Quants API v2 (x-api-key, "data" + "pagination_key") with fault injection.

Field names are the v2 names of the official client's *_COLUMNS_V2 lists (jquants-api-client 2.8.0).
Every number is deterministic, so tests can assert exact values after ingest.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kabuflow import calendar

CODES = ("13010", "72030", "99840")
FIN_COLUMNS = (
    "DiscDate DiscTime Code DiscNo DocType CurPerType CurPerSt CurPerEn CurFYSt CurFYEn NxtFYSt NxtFYEn Sales OP OdP "
    "NP EPS DEPS TA Eq EqAR BPS CFO CFI CFF CashEq Div1Q Div2Q Div3Q DivFY DivAnn DivUnit DivTotalAnn PayoutRatioAnn "
    "FDiv1Q FDiv2Q FDiv3Q FDivFY FDivAnn FDivUnit FDivTotalAnn FPayoutRatioAnn NxFDiv1Q NxFDiv2Q NxFDiv3Q NxFDivFY "
    "NxFDivAnn NxFDivUnit NxFPayoutRatioAnn FSales2Q FOP2Q FOdP2Q FNP2Q FEPS2Q NxFSales2Q NxFOP2Q NxFOdP2Q NxFNp2Q "
    "NxFEPS2Q FSales FOP FOdP FNP FEPS NxFSales NxFOP NxFOdP NxFNp NxFEPS MatChgSub SigChgInC ChgByASRev ChgNoASRev "
    "ChgAcEst RetroRst ShOutFY TrShFY AvgSh NCSales NCOP NCOdP NCNP NCEPS NCTA NCEq NCEqAR NCBPS FNCSales2Q FNCOP2Q "
    "FNCOdP2Q FNCNP2Q FNCEPS2Q NxFNCSales2Q NxFNCOP2Q NxFNCOdP2Q NxFNCNP2Q NxFNCEPS2Q FNCSales FNCOP FNCOdP FNCNP "
    "FNCEPS NxFNCSales NxFNCOP NxFNCOdP NxFNCNP NxFNCEPS ShEq NCShEq ROE NCROE"
).split()
INVESTOR_WHO = (
    "Prop",
    "Brk",
    "Tot",
    "Ind",
    "Frgn",
    "SecCo",
    "InvTr",
    "BusCo",
    "OthCo",
    "InsCo",
    "Bank",
    "TrstBnk",
    "OthFin",
)
MARGIN_VALUES = ("ShrtVol", "LongVol", "ShrtNegVol", "LongNegVol", "ShrtStdVol", "LongStdVol")
SUBSCRIPTION = "Your subscription covers the following dates: {} ~ {}. If you want more data, please check other plans: https://jpx-jquants.com/"


@dataclass
class Fault:
    """Misbehave on matching requests: 429, 500, truncated, malformed, nodata (200 without "data"), reset."""

    path: str
    kind: str
    date: str | None = None
    page: int | None = None
    times: int = 1  # -1: forever
    retry_after: str = "0"


def _d(x: dt.date) -> str:
    return x.isoformat()


def bar(code: str, i: int, day: dt.date) -> dict[str, Any]:
    """One /equities/bars/daily row: numbers for two codes, strings (as some responses have) for the third."""
    k = CODES.index(code)
    c = 1000.0 * (k + 1) + i
    row: dict[str, Any] = {"Date": _d(day), "Code": code, "O": c - 1, "H": c + 2, "L": c - 3, "C": c, "UL": "0",
                           "LL": "0", "Vo": 1000.0 + i, "Va": c * (1000.0 + i), "AdjFactor": 1.0}  # fmt: skip
    if code == "72030" and i == 2:  # an untraded day: J-Quants sends the row with null prices and 0 volume
        row.update(O=None, H=None, L=None, C=None, Vo=0.0, Va=0.0)
    row.update({f"Adj{f}": row[f] for f in ("O", "H", "L", "C", "Vo")})
    if code == "99840":
        row = {f: ("" if f == "Va" else str(v) if isinstance(v, float) else v) for f, v in row.items()}
    return row


class JQuantsServer:
    """J-Quants v2 on 127.0.0.1 (port 0) for sessions in [start, end]; `url` is the base URL (…/v2)."""

    def __init__(self, api_key: str, start: str, end: str, page_size: int = 2):
        self.api_key, self.page_size = api_key, page_size
        self.sessions = calendar.sessions(start, end)
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        self.plan_window: tuple[str, str] | None = None
        self.plan_status = 400
        self.gated: set[str] = set()
        self.echo_key = False
        self.misdate: dict[str, str] = {}  # bars asked for on a date answered with another (a server fault)
        self.reject_status = 403  # status for a wrong key (J-Quants answers 401 or 403)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v2"

    def __enter__(self) -> JQuantsServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.log if path is None or r["path"] == path]

    # -- data ---------------------------------------------------------------------------------
    def rows(self, path: str, q: dict[str, str]) -> list[dict[str, Any]]:
        day = dt.date.fromisoformat(q["date"]) if "date" in q else None
        lo = dt.date.fromisoformat(q.get("from", "1900-01-01"))
        hi = dt.date.fromisoformat(q.get("to", "2100-01-01"))
        idx = {d: i for i, d in enumerate(self.sessions)}
        if path == "/equities/bars/daily":
            rows = [bar(c, idx[day], day) for c in CODES] if day in idx else []
            return [{**r, "Date": self.misdate.get(r["Date"], r["Date"])} for r in rows]
        if path == "/equities/master":
            return [{"Date": _d(day), "Code": c, "CoName": f"会社{c}", "CoNameEn": f"Company {c}", "S17": "6",
                     "S17Nm": "自動車・輸送機", "S33": "3700", "S33Nm": "輸送用機器", "ScaleCat": "TOPIX Core30",
                     "Mkt": "0111", "MktNm": "プライム", "Mrgn": "2", "MrgnNm": "貸借", "ProdCat": "011"}
                    for c in CODES]  # fmt: skip
        if path == "/indices/bars/daily/topix":
            return [{"Date": _d(d), "O": 2500.0 + i, "H": 2510.0 + i, "L": 2490.0 + i, "C": 2505.0 + i}
                    for d, i in idx.items() if lo <= d <= hi]  # fmt: skip
        if path == "/fins/summary":
            i = idx.get(day, -1)
            if i % 3 != 0:
                return []
            row = dict.fromkeys(FIN_COLUMNS, "")
            row.update(DiscDate=_d(day), DiscTime="15:00:00" if i % 2 else "13:30", Code="72030",
                       DiscNo=f"2024{i:06d}", DocType="3QFinancialStatements_Consolidated_IFRS", CurPerType="3Q",
                       CurPerSt="2024-04-01", CurPerEn="2024-12-31", CurFYSt="2024-04-01", CurFYEn="2025-03-31",
                       Sales=str(1_000_000 + i), OP="120000", NP="90000", EPS="65.5", TA="9000000", Eq="3500000",
                       ShOutFY="15794987460")  # fmt: skip
            return [row]
        if path == "/equities/investor-types":
            fridays = [d for d in self.sessions if d.weekday() == 4 and lo <= d + dt.timedelta(days=6) <= hi]
            return [{"PubDate": _d(f + dt.timedelta(days=6)), "StDate": _d(f - dt.timedelta(days=4)), "EnDate": _d(f),
                     "Section": "TSEPrime", **{f"{w}{x}": 1000.0 * j + n for j, w in enumerate(INVESTOR_WHO)
                                               for n, x in enumerate(("Sell", "Buy", "Tot", "Bal"))}}
                    for f in fridays]  # fmt: skip
        if path == "/markets/margin-interest":
            return [{"PubDate": "", "Date": _d(day), "Code": c, "IssType": "2",
                     **{v: 100.0 * (n + 1) for n, v in enumerate(MARGIN_VALUES)},
                     **{v.replace("Vol", "Val"): "" for v in MARGIN_VALUES}} for c in CODES]  # fmt: skip
        if path == "/markets/calendar":
            days = [lo + dt.timedelta(days=n) for n in range((hi - lo).days + 1)]
            return [{"Date": _d(d), "HolDiv": "1" if d in idx else "0"} for d in days]
        return []

    # -- HTTP ---------------------------------------------------------------------------------
    def _take_fault(self, path: str, q: dict[str, str], page: int) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.path == path and f.date in (None, q.get("date")) and f.page in (None, page) and f.times:
                    f.times -= 1
                    return f
        return None

    def _outside_plan(self, q: dict[str, str]) -> bool:
        if not self.plan_window:
            return False
        lo, hi = self.plan_window
        return any(k in q and not lo <= q[k] <= (hi or "9999") for k in ("date", "from", "to"))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stalls)

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None, cut: int = 0
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body[: len(body) - cut])
                if cut:
                    self.close_connection = True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/v2")
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                key = q.pop("pagination_key", None)
                offset = int(key[1:]) if key else 0
                page = offset // server.page_size
                with server.lock:
                    server.log.append({"path": path, "params": dict(q), "page": page, "t": time.monotonic()})
                given = self.headers.get("x-api-key")
                if not given:
                    return self._send(401, json.dumps({"message": "The api key is required."}).encode())
                if given != server.api_key:
                    who = f" ({given})" if server.echo_key else ""
                    msg = {"message": f"The incoming api key{who} is invalid or expired."}
                    return self._send(server.reject_status, json.dumps(msg).encode())
                if path in server.gated:
                    return self._send(
                        403,
                        json.dumps({"message": "This API is not available on your subscription."}).encode(),
                    )
                if server._outside_plan(q):
                    msg = SUBSCRIPTION.format(*server.plan_window)
                    return self._send(server.plan_status, json.dumps({"message": msg}).encode())
                fault = server._take_fault(path, q, page)
                if fault and fault.kind == "reset":
                    self.close_connection = True
                    return None
                if fault and fault.kind in ("429", "500"):
                    body = json.dumps(
                        {"message": "Too Many Requests" if fault.kind == "429" else "Internal Server Error"}
                    )
                    return self._send(int(fault.kind), body.encode(), {"Retry-After": fault.retry_after})
                rows = server.rows(path, q)
                chunk = rows[offset : offset + server.page_size]
                payload: dict[str, Any] = {"data": chunk}
                if offset + server.page_size < len(rows):
                    payload["pagination_key"] = f"p{offset + server.page_size}"
                body = json.dumps(payload, ensure_ascii=False).encode()
                if fault and fault.kind == "malformed":
                    body = body[: len(body) // 2] + b"<html>"
                if fault and fault.kind == "nodata":
                    body = b'{"message": "upstream hiccup"}'
                return self._send(200, body, cut=len(body) // 2 if fault and fault.kind == "truncated" else 0)

        return Handler
