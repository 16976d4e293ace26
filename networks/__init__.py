"""Ready networks built only from :mod:`neuro` parts."""
