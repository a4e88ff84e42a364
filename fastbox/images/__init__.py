"""The local OCI image store: references, layer unpacking, the store and the built-in image.

Deliberately empty of imports: `fastbox run` imports fastbox.images.store on its hot path,
and anything imported here would be paid for there.
"""
