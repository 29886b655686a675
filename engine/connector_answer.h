/* The answer readers of the network connectors (keyfactor, cfssl): what a CA's HTTP answer body
 * becomes in the job. Declared apart from the connectors so that the fuzz targets (fuzz/) feed
 * them answers without a network or an HSM; the connectors are their only other callers. */
#ifndef HSMENROLL_ENGINE_CONNECTOR_ANSWER_H
#define HSMENROLL_ENGINE_CONNECTOR_ANSWER_H

#include "connector_net.h"

/* Keyfactor's answer to POST /Enrollment/CSR: CertificateInformation (keys case-insensitive)
 * gives j->cert and j->chain, or j->pending with the disposition, or j->failed with j->err. */
void keyfactor_answer(net_ca *nc, job *j, const http_request *req);
/* CFSSL's answer to /api/v1/cfssl/sign: {"success": true, "result": {"certificate": PEM}} gives
 * j->cert (and the ChainFile as j->chain), else j->failed with the CA's first error message. */
void cfssl_answer(net_ca *nc, job *j, const http_request *req);

#endif
