"""fastbox build: Containerfiles to images (parser, context, cache, steps, layer, builder)."""
