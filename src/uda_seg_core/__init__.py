"""uda_seg_core: BiSeNet, discriminators, adversarial domain adaptation and compression.

Pure PyTorch; it never imports ROS. See README.md for the commands.
"""
__version__ = "0.1.0"
