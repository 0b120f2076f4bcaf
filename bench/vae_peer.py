"""VAE training step in PyTorch Python: zoo's MLP VAE (784 -> 400 -> 2 x 20, 20 -> 400 -> 784),
a Bernoulli decoder, -ELBO with the KL in closed form, Adam: the step of bench.cpp's vae."""
import torch
import torch.nn.functional as F

import peer

a = peer.args(default_batch=100)


class VAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_hidden, self.enc_mu, self.enc_logvar = (torch.nn.Linear(784, 400), torch.nn.Linear(400, 20),
                                                         torch.nn.Linear(400, 20))
        self.dec_hidden, self.dec_out = torch.nn.Linear(20, 400), torch.nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.enc_hidden(x.flatten(1)))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.dec_out(F.relu(self.dec_hidden(z)))
        # Both terms in float32, as zoo's VAE::elbo (no-ops in float32; under CPU bf16 autocast the
        # layers' outputs are bfloat16).
        logits, mu, logvar = logits.float(), mu.float(), logvar.float()
        rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(-1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        return (rec + kl).mean()


m = VAE()
params = list(m.parameters())
update = peer.optimizer_step(torch.optim.Adam(params, lr=1e-3), params)
x = torch.rand(a.batch, 1, 28, 28)
peer.run(a, "vae", lambda: update(m(x)), a.batch, "images", params)
