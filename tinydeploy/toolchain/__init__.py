"""The toolchain layer: PlatformIO, the cross compiler, esptool, and writing a project to disk."""
