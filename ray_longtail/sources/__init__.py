"""Candidate sources: the shared base (`base`), collaborative (`collaborative`) and content (`content`) sources,
and the registry of their names (`registry`)."""
