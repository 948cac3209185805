"""Pure numpy / scipy / scikit-image core: no napari, Qt, magicgui or torch here."""
