"""squeezenet-frcnn: SqueezeNet Faster R-CNN with online hard example mining, for Caffe.

The library is importable without pycaffe; only the modules whose job is Caffe itself
(the network builders, the training and test drivers, the smoke job) import it, lazily.
Box conventions follow py-faster-rcnn: boxes are (N, 4) float x1 y1 x2 y2 in inclusive
pixel coordinates, so a box's width is x2 - x1 + 1.
"""

__version__ = "0.1.0"
