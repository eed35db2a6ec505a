"""Compiled kernels, built from the sources in the repository's nms/ folder."""
