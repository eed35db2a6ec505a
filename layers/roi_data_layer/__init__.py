"""Caffe Python layers, importable by py-faster-rcnn's module name `roi_data_layer`."""
