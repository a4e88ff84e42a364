"""Images: references, the local OCI store, layer unpacking, the built-in image, and the way
in and out of the store (registry client and auth, pull, push, save/load archives).

Deliberately empty of imports: `fastbox run` imports fastbox.images.store on its hot path,
and anything imported here would be paid for there.
"""
