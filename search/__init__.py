"""The compiler-aware architecture search (later issues)."""
