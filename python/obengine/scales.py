"""Default price and amount scales (decimal places) per pair.

From the exchange's API documentation, table "Pairs Scale (Quantity/Price)" (see PROTOCOL.md in
the project's shared folder). The live source is ``/api/v2/server/exchangeinfo``; this table is
the default until the live client refreshes it. A pair missing here gets its scales inferred from
its first snapshot (see ``obengine.BookSet``).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["DEFAULT_SCALES"]

#: ``{pair: (price_scale, amount_scale)}``, pair symbols as the websocket spells them (``BTCTRY``).
DEFAULT_SCALES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "BTCTRY": (0, 8),
        "ETHTRY": (0, 8),
        "LTCTRY": (2, 8),
        "XRPTRY": (2, 4),
        "USDTTRY": (2, 2),
        "XLMTRY": (4, 4),
        "EOSTRY": (2, 2),
        "NEOTRY": (2, 4),
        "XTZTRY": (2, 2),
        "BTCUSDT": (0, 8),
        "ETHUSDT": (1, 8),
        "LTCUSDT": (2, 8),
        "XRPUSDT": (4, 4),
        "XLMUSDT": (4, 4),
        "EOSUSDT": (3, 2),
        "NEOUSDT": (2, 4),
        "EOSBTC": (5, 4),
        "ETHBTC": (8, 8),
        "LTCBTC": (5, 8),
        "NEOBTC": (5, 8),
        "XLMBTC": (8, 4),
        "XRPBTC": (8, 4),
    }
)
