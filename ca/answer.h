/* The answer readers of the network connectors (keyfactor, cfssl): what a CA's HTTP answer body
 * becomes in a submission's answer. Declared apart from the connectors so that the fuzz targets
 * (fuzz/) feed them answers without a network or an HSM; the connectors are their only other
 * callers. */
#ifndef HSMENROLL_CA_ANSWER_H
#define HSMENROLL_CA_ANSWER_H

#include "ca/net.h"

/* Keyfactor's answer to POST /Enrollment/CSR: CertificateInformation (keys case-insensitive)
 * gives the certificate and chain, or pending with the disposition, or failed with err. */
void keyfactor_answer(net_ca *nc, ca_submission *sub, const http_request *req);
/* CFSSL's answer to /api/v1/cfssl/sign: {"success": true, "result": {"certificate": PEM}} gives
 * the certificate (and the ChainFile as chain), else failed with the CA's first error message. */
void cfssl_answer(net_ca *nc, ca_submission *sub, const http_request *req);

#endif
