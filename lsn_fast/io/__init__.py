"""Reading radiographs and cutting joint crops.

* :mod:`.readers` — :func:`read_radiograph` (DICOM, PNG, JPEG, TIFF, MetaImage, NRRD), :func:`crop_roi`, :func:`write_png`.
* :mod:`.formats` — the hostile-input-safe low level: regular files only, PNG stream check, MetaImage/NRRD parsers.
* :mod:`.presentation` — presentation images to the phantoms' attenuation domain (``kind="presentation-anchored"``).
* :mod:`.locate` — :func:`locate_joints`: MCP/PIP/DIP of fingers 2-5, their axes, a spacing from anatomy.
"""

from lsn_fast.io.readers import (AIR_PERCENTILE, NOMINAL_ATTENUATION, Radiograph, RadiographError, RadiographWarning,
                                 RoiCrop, crop_roi, read_radiograph, write_png)
from lsn_fast.io.locate import HandJoints, Joint, LocateError, LocateWarning, locate_joints

__all__ = ["AIR_PERCENTILE", "NOMINAL_ATTENUATION", "Radiograph", "RadiographError", "RadiographWarning", "RoiCrop",
           "crop_roi", "read_radiograph", "write_png", "HandJoints", "Joint", "LocateError", "LocateWarning",
           "locate_joints"]
