"""The process: assembling the server (`server`), workers on one port (`supervisor`), binding
listen addresses (`binding`), the event loop (`eventloop`), message limits (`limits`) and hot
reload (`reload`). Everything with a socket, a signal or a child process lives here.
"""
