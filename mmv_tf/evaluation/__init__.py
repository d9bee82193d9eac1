"""The paper's evaluation protocols on users' data: `mmv-tf evaluate video-classification`,
`retrieval`, `audio-classification` and `image-classification` (see `classification` and
`retrieval`; data layouts in `datasets`; what each writes in `report`)."""
