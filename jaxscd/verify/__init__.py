"""Verification: z3 encodings (encode), proofs (prove), certificate bundles (certificate)."""
