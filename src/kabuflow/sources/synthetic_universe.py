"""The synthetic market's listed companies: sectors, segments, sizes, risk loadings, lead-lag clusters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# JPX 33 sectors: (S33, S33Nm, English name, S17, listed companies in the jpx-2463 master snapshot of
# 2024-03-29). The counts set realistic sector sizes: Information & Communication and Services are
# the largest, Mining and Air Transportation the smallest.
SECTORS: tuple[tuple[str, str, str, str, int], ...] = (
    ("0050", "水産・農林業", "Fishery, Agriculture & Forestry", "1", 12),
    ("1050", "鉱業", "Mining", "2", 6),
    ("2050", "建設業", "Construction", "3", 161),
    ("3050", "食料品", "Foods", "1", 126),
    ("3100", "繊維製品", "Textiles & Apparels", "4", 49),
    ("3150", "パルプ・紙", "Pulp & Paper", "4", 24),
    ("3200", "化学", "Chemicals", "4", 210),
    ("3250", "医薬品", "Pharmaceutical", "5", 78),
    ("3300", "石油・石炭製品", "Oil & Coal Products", "2", 11),
    ("3350", "ゴム製品", "Rubber Products", "6", 18),
    ("3400", "ガラス・土石製品", "Glass & Ceramics Products", "3", 54),
    ("3450", "鉄鋼", "Iron & Steel", "7", 42),
    ("3500", "非鉄金属", "Nonferrous Metals", "7", 35),
    ("3550", "金属製品", "Metal Products", "3", 90),
    ("3600", "機械", "Machinery", "8", 223),
    ("3650", "電気機器", "Electric Appliances", "9", 242),
    ("3700", "輸送用機器", "Transportation Equipment", "6", 88),
    ("3750", "精密機器", "Precision Instruments", "9", 49),
    ("3800", "その他製品", "Other Products", "10", 107),
    ("4050", "電気・ガス業", "Electric Power & Gas", "11", 25),
    ("5050", "陸運業", "Land Transportation", "12", 63),
    ("5100", "海運業", "Marine Transportation", "12", 11),
    ("5150", "空運業", "Air Transportation", "12", 6),
    ("5200", "倉庫・運輸関連業", "Warehousing & Harbor Transportation", "12", 37),
    ("5250", "情報・通信業", "Information & Communication", "10", 620),
    ("6050", "卸売業", "Wholesale Trade", "13", 310),
    ("6100", "小売業", "Retail Trade", "14", 356),
    ("7050", "銀行業", "Banks", "15", 79),
    ("7100", "証券、商品先物取引業", "Securities & Commodity Futures", "16", 41),
    ("7150", "保険業", "Insurance", "16", 15),
    ("7200", "その他金融業", "Other Financing Business", "16", 38),
    ("8050", "不動産業", "Real Estate", "17", 157),
    ("9050", "サービス業", "Services", "10", 557),
)
S17_NAMES = {
    "1": "食品",
    "2": "エネルギー資源",
    "3": "建設・資材",
    "4": "素材・化学",
    "5": "医薬品",
    "6": "自動車・輸送機",
    "7": "鉄鋼・非鉄",
    "8": "機械",
    "9": "電機・精密",
    "10": "情報通信・サービスその他",
    "11": "電力・ガス",
    "12": "運輸・物流",
    "13": "商社・卸売",
    "14": "小売",
    "15": "銀行",
    "16": "金融（除く銀行）",
    "17": "不動産",
}
MARKETS = {"0111": "プライム", "0112": "スタンダード", "0113": "グロース"}
# Real segment shares of 3,838 stocks (jpx-2463 master): Prime 1,653, Standard 1,609, Growth 576.
PRIME_SHARE, GROWTH_SHARE = 0.43, 0.15
# TOPIX size buckets by market-cap rank among Prime stocks, per 3,800 listed stocks (Core30 = 30, ...).
SCALE_BUCKETS = (("TOPIX Core30", 30), ("TOPIX Large70", 70), ("TOPIX Mid400", 400), ("TOPIX Small 1", 500))

MKT_VOL = 0.0102  # GARCH long-run daily vol of the market factor in calm regimes (TOPIX: ~1.1 % all in)
SECTOR_VOL, CLUSTER_VOL = 0.006, 0.015
STYLE_VOL = np.array([0.003, 0.002, 0.003])  # size, value, momentum factor returns
CLUSTER_SHARE, CLUSTER_SIZE = 0.6, 8


@dataclass(frozen=True)
class Universe:
    """Static attributes of the N companies (arrays of length N, in code order)."""

    codes: np.ndarray  # str, 5 characters
    sector: np.ndarray  # int index into SECTORS
    mkt: np.ndarray  # str market code
    old_section: np.ndarray  # str, investor-type section before the April 2022 market restructuring
    topix500: np.ndarray  # bool: fine tick table
    list_start: np.ndarray  # int session index of the first bar (0 = listed before the range)
    list_end: np.ndarray  # int session index of the last bar (inclusive)
    price0: np.ndarray  # raw close on the first bar (yen)
    shares0: np.ndarray  # shares outstanding on the first bar
    beta: np.ndarray
    sector_load: np.ndarray
    cluster: np.ndarray  # int lead-lag cluster, -1 = none
    cluster_load: np.ndarray
    style: np.ndarray  # [N, 2] static exposures: size (small minus big), value
    idio_vol: np.ndarray  # long-run daily idiosyncratic vol
    resid_vol: np.ndarray  # long-run daily vol of the non-market return: the unit of signal strength
    turnover: np.ndarray  # mean daily volume / shares outstanding
    fy_end_month: np.ndarray  # 1..12
    disc_lag: np.ndarray  # typical days from quarter end to disclosure
    pbr: np.ndarray
    roe: np.ndarray
    eq_ratio: np.ndarray  # equity / total assets
    iss_type: np.ndarray  # str margin issue type: "2" loan-eligible, "1" margin only
    long_ratio: np.ndarray  # long margin balance / shares outstanding
    short_ratio: np.ndarray  # short / long margin balance

    @property
    def n(self) -> int:
        """Number of companies."""
        return len(self.codes)


def _sector_counts(n: int) -> np.ndarray:
    """Allocate n companies to the 33 sectors in proportion to their real sizes (largest remainder)."""
    w = np.array([s[4] for s in SECTORS], dtype=float)
    raw = n * w / w.sum()
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


def _codes(sector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique 4-digit codes ascending with the sector (as TSE numbering roughly is), plus check digit 0."""
    n = len(sector)
    step = 8600 / n
    base = 1300 + np.floor(np.arange(n) * step).astype(int)
    jitter = np.floor(rng.random(n) * max(1.0, step - 1)).astype(int)
    codes = base + jitter
    assert step >= 1 and (np.diff(codes) > 0).all() and codes[-1] <= 9999, "codes must be unique 4-digit"
    return np.array([f"{c}0" for c in codes])


def _clusters(n: int, rng: np.random.Generator) -> np.ndarray:
    """Cross-sector lead-lag clusters: CLUSTER_SHARE of the companies in groups of ~CLUSTER_SIZE."""
    k = max(1, int(round(n * CLUSTER_SHARE / CLUSTER_SIZE)))
    members = rng.permutation(n)[: k * CLUSTER_SIZE]
    cluster = np.full(n, -1)
    cluster[members] = np.arange(len(members)) % k
    return cluster


def _listing(n: int, t: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """IPOs (about 15 % list inside the range) and delistings (about 8 % leave it)."""
    start = np.where(rng.random(n) < 0.15, rng.integers(1, max(2, t - 120), n), 0)
    gone = rng.random(n) < 0.08
    lo = np.minimum(start + 120, t - 1)
    end = np.where(gone, lo + np.floor(rng.random(n) * (t - 1 - lo)).astype(int), t - 1)
    return start, end


def _segments(size: np.ndarray, ipo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Prime for the largest ~43 %, Growth for ~15 % (mostly recent IPOs), Standard for the rest."""
    n = len(size)
    score = size + rng.normal(0, 0.3, n)
    rank = np.argsort(np.argsort(-score))
    mkt = np.where(rank < PRIME_SHARE * n, "0111", "0112")
    growth_score = np.where(mkt == "0111", -np.inf, ipo * 2.0 - size + rng.normal(0, 0.5, n))
    mkt[np.argsort(-growth_score)[: int(round(GROWTH_SHARE * n))]] = "0113"
    return mkt


def _risk(size: np.ndarray, growth: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Factor loadings and volatilities: the total daily vol is ~2.1 % at the median, higher for small
    and Growth stocks; the idiosyncratic part is what the market, sector, cluster and styles leave."""
    n = len(size)
    beta = np.clip(rng.normal(1.0 + 0.1 * size, 0.25), 0.2, 1.8)
    sector_load = rng.uniform(0.7, 1.3, n)
    cluster = _clusters(n, rng)
    cluster_load = np.where(cluster >= 0, rng.uniform(0.8, 1.2, n), 0.0)
    style = np.column_stack([-size, rng.normal(0, 1, n)])  # size (small minus big), value
    total = 0.021 * np.exp(-0.17 * size + 0.25 * growth + rng.normal(0, 0.22, n))
    common = (
        (SECTOR_VOL * sector_load) ** 2 + (CLUSTER_VOL * cluster_load) ** 2 + style**2 @ STYLE_VOL[:2] ** 2
    )
    idio = np.sqrt(np.maximum(total**2 - (beta * MKT_VOL) ** 2 - common, (0.4 * total) ** 2))
    return {
        "beta": beta,
        "sector_load": sector_load,
        "cluster": cluster,
        "cluster_load": cluster_load,
        "style": style,
        "idio_vol": idio,
        "resid_vol": np.sqrt(idio**2 + common + STYLE_VOL[2] ** 2),
    }


def make_universe(n: int, t: int, rng: np.random.Generator) -> Universe:
    """Draw N companies for a range of T sessions; everything downstream is a function of these."""
    sector = np.repeat(np.arange(len(SECTORS)), _sector_counts(n))
    codes = _codes(sector, rng)
    log_cap = rng.normal(10.3, 0.75, n)  # log10 yen: median ~20 bn
    start, end = _listing(n, t, rng)
    ipo = start > 0
    log_cap = np.maximum(log_cap - 0.5 * ipo, 9.0)  # IPOs are smaller; none below ~1 bn yen
    size = (log_cap - log_cap.mean()) / log_cap.std()
    mkt = _segments(size, ipo.astype(float), rng)
    growth = mkt == "0113"
    price0 = 10 ** (3.05 + 0.15 * size + rng.normal(0, 0.4, n))
    risk = _risk(size, growth, rng)
    months = rng.choice([3, 12, 9, 6, 2, 5, 8, 11], n, p=[0.68, 0.13, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02])
    return Universe(
        codes=codes,
        sector=sector,
        mkt=mkt,
        old_section=_old_sections(mkt, rng),
        topix500=np.argsort(np.argsort(-log_cap)) < 500 * n / 3800,
        list_start=start,
        list_end=end,
        price0=price0,
        shares0=np.round(10**log_cap / price0, -2),
        **risk,
        turnover=0.003 * np.exp(-0.2 * size + 0.4 * growth + rng.normal(0, 0.5, n)),
        fy_end_month=months,
        disc_lag=rng.integers(28, 44, n),
        pbr=np.exp(rng.normal(0.1 - 0.15 * growth, 0.5, n)) + 0.5 * growth,
        roe=rng.normal(0.08, 0.05, n),
        eq_ratio=rng.uniform(0.25, 0.7, n),
        iss_type=np.where((mkt == "0111") & (rng.random(n) < 0.85) | (rng.random(n) < 0.3), "2", "1"),
        long_ratio=0.01 * np.exp(-0.3 * size + rng.normal(0, 0.6, n)),
        short_ratio=rng.uniform(0.05, 0.6, n),
    )


def _old_sections(mkt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Investor-type section before 2022-04-04: Prime came from the 1st section, Growth from Mothers/JASDAQ."""
    u = rng.random(len(mkt))
    standard = np.where(u < 0.5, "TSE1st", np.where(u < 0.75, "TSE2nd", "TSEJASDAQ"))
    growth = np.where(u < 0.7, "TSEMothers", "TSEJASDAQ")
    return np.where(mkt == "0111", "TSE1st", np.where(mkt == "0112", standard, growth))
