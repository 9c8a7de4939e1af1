"""crossbook's measurement tools, apart from the product: the benchmark (``python -m
crossbook_bench``), the cryptofeed comparison (``crossbook_bench.versus``), the soak
(``crossbook_bench.soak``), the load generator they share and the inlined floor."""
