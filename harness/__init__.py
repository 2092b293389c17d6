"""Test and benchmark harness for msa_sgl: problem builders, Hypothesis strategies, tolerance
helpers, golden-file I/O and SGLang-shaped inputs. Not part of the installed package."""
