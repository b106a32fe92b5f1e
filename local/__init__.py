"""The local stack: moto for AWS, an emulator of fal's queue API, and a small Lambda runtime.

Never deployed. It reads template.yaml for every resource, wiring and setting, so what runs here
is what the template declares.
"""
