"""Retrieval evaluation: class-folder data sets, metrics (mAP, P@K), stage-1 and stage-2 ranking."""
