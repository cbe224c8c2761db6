# coap-alarm firmware package: a CoAP (RFC 7252) server with an observable /alarm (RFC 7641).
VERSION = "0.1.0"
