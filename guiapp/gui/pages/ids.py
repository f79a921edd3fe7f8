from enum import IntEnum


class PageId(IntEnum):
    MODEL = 0
    PREPROCESS = 1
    CALIBRATION = 2
    RUN = 3
    RESULTS = 4
