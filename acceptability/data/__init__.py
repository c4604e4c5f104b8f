"""The data phase: CoLA and the pretrained model, each verified against its pins; tokenization; the perturbed
sentences the teacher labels."""
