-- The default price catalog (version 1), as the pricing crate's Catalog::builtin_default().
-- Later versions are published by admins through the API; this one is never edited.
INSERT INTO contracts.catalog_versions (version, document, created_by) VALUES (1, $json$
{
  "version": 1,
  "currency": "USD",
  "tier_multipliers": {
    "standard": "1.0",
    "premium": "1.5",
    "enterprise": "2.5"
  },
  "term_discounts": {
    "hourly": "0",
    "month": "0.20",
    "half_year": "0.35"
  },
  "models": {
    "smollm2-135m-instruct": {
      "reservation": {
        "mode": "graduated",
        "tiers": [
          {
            "up_to": "100",
            "unit_price": "0.0100",
            "flat_fee": "0"
          },
          {
            "up_to": "1000",
            "unit_price": "0.0090",
            "flat_fee": "0"
          },
          {
            "up_to": null,
            "unit_price": "0.0080",
            "flat_fee": "0"
          }
        ]
      },
      "on_demand_per_million": {
        "mode": "graduated",
        "tiers": [
          {
            "up_to": "100",
            "unit_price": "0.20",
            "flat_fee": "0"
          },
          {
            "up_to": "1000",
            "unit_price": "0.15",
            "flat_fee": "0"
          },
          {
            "up_to": null,
            "unit_price": "0.10",
            "flat_fee": "0"
          }
        ]
      },
      "spot_per_million": {
        "mode": "volume",
        "tiers": [
          {
            "up_to": "1000",
            "unit_price": "0.05",
            "flat_fee": "0"
          },
          {
            "up_to": null,
            "unit_price": "0.04",
            "flat_fee": "0"
          }
        ]
      }
    }
  }
}
$json$::jsonb, 'migration') ON CONFLICT (version) DO NOTHING;
