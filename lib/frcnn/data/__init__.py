"""Datasets and minibatches: from VOC-format folders to the RoIDataLayer's blobs.

  voc.py        the PASCAL VOC-format reader (Annotations/, ImageSets/Main/, JPEGImages/)
  coco.py       the COCO-format reader (instances_<split>.json) and VOC <-> COCO writers
  synth.py      the built-in synthetic dataset (circles, squares, triangles) in VOC format
  datasets.py   datasets by name (synth_train, voc_2007_trainval, ...) or by path
  roidb.py      roidb preparation: gt overlaps, flipping, filtering
  blobs.py      images to network blobs (mean subtraction, scaling)
  minibatch.py  minibatches for end-to-end training, shuffled epochs, aspect grouping
  prefetch.py   a background thread that prepares the next minibatches
  problems.py   bad-input reports: raise, or skip with a warning and a count
  commands.py   the ``frcnn data`` subcommands

Conventions (py-faster-rcnn's): boxes are float32 (G, 4) x1 y1 x2 y2 in 0-based inclusive
pixels (width = x2 - x1 + 1); class 0 is ``__background__``.  Nothing here imports pycaffe.
"""
