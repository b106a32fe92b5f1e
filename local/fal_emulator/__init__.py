"""A local emulator of fal's queue API for ``fal-ai/pika/v2.1/image-to-video``.

It speaks HTTPS (fal_client always uses https), validates input like fal, renders a real H.264
MP4 from the image (a slow camera move: an honest stand-in for Pika, labelled as one), serves it,
and delivers the webhook signed with its own Ed25519 key, whose JWKS it publishes. Fault knobs
let tests make it misbehave the ways fal can.
"""
