"""The networks: SqueezeNet and ZF Faster R-CNN prototxts, generated from one definition,
and a static checker for prototxts.

Modules (each imports pycaffe lazily, inside its functions, so that the ``frcnn`` command
line can register its subcommands cheaply):
  variants   the one table of variants and their parameters (classes, anchors, image scale,
             solver settings)
  layers     small NetSpec helpers (layer naming, fillers, param_str text, prototxt text)
  squeezenet SqueezeNet v1.1 trunk (DeepScale's names) and the seed's RoI head
  zf         ZF trunk and head (py-faster-rcnn's ZF end-to-end net)
  detection  the Faster R-CNN train and test nets: data, RPN, proposals, RoI head, OHEM
  generate   writes train/test/solver prototxts and the cfg file of each variant
  checker    ``frcnn check``: what would fail at train time, parameter count and size;
             its jobs in check_shapes (Caffe shape inference), check_setup (the Python
             layers' own setup on stand-in blobs) and check_rules (Faster R-CNN rules)
  caffe_params  kernel / pad / stride / dilation and pooling's ceil_mode as Caffe reads
             them (shared by the checker and the ONNX converter)
  commands   the ``frcnn prototxt`` and ``frcnn check`` subcommands
"""
