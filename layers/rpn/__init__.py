"""Caffe Python layers, importable by py-faster-rcnn's module name `rpn`."""
