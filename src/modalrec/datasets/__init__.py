"""Built-in data sets and everything specific to them: fetching MovieLens from the package registries,
its item text and film credits, posters rendered from metadata, the synthetic set (see docs/data.md)."""
