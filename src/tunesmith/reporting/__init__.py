"""Human-readable views: token previews, tables and reports."""
