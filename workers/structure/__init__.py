"""PP-StructureV3's worker side: blocks from layout and lines, reading order, Markdown, the runner."""
