"""AVA-format data: readers, transforms, synthetic data."""
