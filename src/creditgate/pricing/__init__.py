"""Pricing: meters, versioned rate cards, dynamic rules, quotes, bundles, provider sheets.

The public surface is re-exported here; everything else is an implementation detail. The pieces
are pure domain code (no SQL, no HTTP): storage sits behind :class:`PriceCatalog`.

* Rating: :class:`PricingEngine` (``quote``, ``estimate_max``, ``explain``) over a
  :class:`RateCard` and its :class:`OrgOverride` list.
* Cards: :func:`validate_versions`, :meth:`RateCard.create`, :meth:`RateCard.with_version`,
  :func:`parse_card_document` / :func:`load_card_text` for YAML documents.
* Money: :class:`ConversionRate`; bundles: :class:`Bundle`, :func:`purchase_grants`.
* Provider sheets: :func:`import_litellm`, :func:`import_price_csv`, :func:`import_price_yaml`,
  :func:`import_sheet`, :func:`sheet_to_rate_card`; comparison: :func:`compare`.
"""

from creditgate.pricing.bundles import (
    Bundle,
    BundlePurchase,
    GrantSpec,
    RolloverPolicy,
    parse_bundle_catalog,
    purchase_grants,
    rollover_amount,
)
from creditgate.pricing.card_files import CardDocument, load_card_text, parse_card_document
from creditgate.pricing.catalog import InMemoryPriceCatalog, JsonFilePriceCatalog, PriceCatalog
from creditgate.pricing.compare import (
    Comparison,
    Workload,
    WorkloadItem,
    compare,
    load_workload_text,
    parse_workload,
    rank_bundles,
)
from creditgate.pricing.conversion import DEFAULT_CONVERSION, ConversionRate, Conversions
from creditgate.pricing.explain import Explanation
from creditgate.pricing.meters import (
    BUILTIN_METERS,
    DEFAULT_METERS,
    Meter,
    MeterRegistry,
    Usage,
)
from creditgate.pricing.rate_cards import (
    LongContextTier,
    ModelRate,
    OrgOverride,
    Overrides,
    RateCard,
    RateCardVersion,
    validate_versions,
)
from creditgate.pricing.rating import Charge, PricingEngine, UsageRecord
from creditgate.pricing.rules import (
    AppliedRule,
    LoadSnapshot,
    PricingContext,
    Step,
    SurgeRule,
    TimeWindowRule,
    VolumeTier,
    VolumeTierRule,
)
from creditgate.pricing.sheet_import import (
    SHEET_FORMATS,
    ImportResult,
    import_litellm,
    import_price_csv,
    import_price_yaml,
    import_sheet,
    import_sheet_text,
)
from creditgate.pricing.sheets import PriceSheet, SheetEntry, sheet_to_rate_card
from creditgate.pricing.unit_price import UnitPrice

__all__ = [
    "BUILTIN_METERS",
    "DEFAULT_CONVERSION",
    "DEFAULT_METERS",
    "SHEET_FORMATS",
    "AppliedRule",
    "Bundle",
    "BundlePurchase",
    "CardDocument",
    "Charge",
    "Comparison",
    "ConversionRate",
    "Conversions",
    "Explanation",
    "GrantSpec",
    "ImportResult",
    "InMemoryPriceCatalog",
    "JsonFilePriceCatalog",
    "LoadSnapshot",
    "LongContextTier",
    "Meter",
    "MeterRegistry",
    "ModelRate",
    "OrgOverride",
    "Overrides",
    "PriceCatalog",
    "PriceSheet",
    "PricingContext",
    "PricingEngine",
    "RateCard",
    "RateCardVersion",
    "RolloverPolicy",
    "SheetEntry",
    "Step",
    "SurgeRule",
    "TimeWindowRule",
    "UnitPrice",
    "Usage",
    "UsageRecord",
    "VolumeTier",
    "VolumeTierRule",
    "Workload",
    "WorkloadItem",
    "compare",
    "import_litellm",
    "import_price_csv",
    "import_price_yaml",
    "import_sheet",
    "import_sheet_text",
    "load_card_text",
    "load_workload_text",
    "parse_bundle_catalog",
    "parse_card_document",
    "parse_workload",
    "purchase_grants",
    "rank_bundles",
    "rollover_amount",
    "sheet_to_rate_card",
    "validate_versions",
]
