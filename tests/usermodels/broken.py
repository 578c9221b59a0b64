"""A module that fails as it loads, as a package built for another torch does."""
raise RuntimeError("operator torchvision::nms does not exist")
