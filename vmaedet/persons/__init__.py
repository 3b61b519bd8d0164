"""Person detectors: the boxes the action model classifies, behind one interface and a registry."""
