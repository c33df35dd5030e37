"""openpi_core: openpi's vision-language-action models, transforms, training and serving, without ROS."""

__version__ = "0.1.0"

__all__ = ["__version__"]
