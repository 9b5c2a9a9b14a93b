"""Reading radiographs and cutting joint crops.

* :mod:`.readers` — :func:`read_radiograph` (DICOM, PNG, TIFF, ...), :func:`crop_roi`, :func:`write_png`.
"""

from lsn_fast.io.readers import (AIR_PERCENTILE, NOMINAL_ATTENUATION, Radiograph, RadiographError, RadiographWarning,
                                 RoiCrop, crop_roi, read_radiograph, write_png)

__all__ = ["AIR_PERCENTILE", "NOMINAL_ATTENUATION", "Radiograph", "RadiographError", "RadiographWarning", "RoiCrop",
           "crop_roi", "read_radiograph", "write_png"]
