"""Images to tensors: listing, decoding, preprocessing, the preview, labels, the normalization check."""
