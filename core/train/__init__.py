"""The recognizer trainer in parts; `core.train_recognizer.train_recognizer` puts them together.

- `data`: line crops and the held-out pages they are scored on;
- `recipe`: the shared recipe (each network's overrides are in `core.recognize.networks`) and the
  learning-rate schedule;
- `adapter`: what an engine family must provide to be fine-tuned (`Adapter`), with one adapter per
  family in `ctc` and `encoder_decoder`;
- `budget`: the time budget (the schedule's clock and what is set aside for the finish);
- `loop`: the optimizer and the training loop; `validation`: scoring and keeping the best weights;
- `checkpoint`: what an interrupted run resumes from.
"""
