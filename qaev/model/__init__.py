"""The float model: loading and checking the graph (:mod:`.graph`), its quantizable layers
(:mod:`.layers`) and ONNX Runtime sessions (:mod:`.session`)."""
