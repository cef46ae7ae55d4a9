"""The converters behind scripts/build_fashion_bench.py: one module per public source, the shared rules in common.py.
What they write and why is docs/DATA.md."""
