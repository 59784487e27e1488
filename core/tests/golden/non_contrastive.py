"""Golden values for core/tests/loss_non_contrastive.rs, from lightly's implementations.

    pip install torch==2.15.0 lightly==1.6.0   # in a venv outside the repo
    python3 core/tests/golden/non_contrastive.py

The inputs are closed-form (as in losses.py) so that the Rust test rebuilds them exactly; each
line is a name, the loss and the gradient with respect to the first input, flattened.
"""
import math
import torch
from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, VICRegLoss

torch.set_default_dtype(torch.float64)
N, D = 6, 5


def fixture():
    z1 = torch.tensor([[math.sin(0.37 * (i + 1) * (d + 1) + 0.11 * i) for d in range(D)] for i in range(N)])
    z2 = torch.tensor([[math.cos(0.23 * (i + 1) - 0.41 * (d + 2)) * (1 + 0.1 * d) for d in range(D)] for i in range(N)])
    return z1, z2


def show(name, loss, x):
    (g,) = torch.autograd.grad(loss, x)
    print(name, repr(loss.item()), " ".join(repr(v) for v in g.flatten().tolist()))


z1, z2 = fixture()
x = z1.clone().requires_grad_(True)
show("negative_cosine", NegativeCosineSimilarity()(x, z2), x)
show("barlow_twins", BarlowTwinsLoss()(x, z2), x)
show("barlow_twins_l02", BarlowTwinsLoss(lambda_param=0.2)(x, z2), x)
show("vicreg", VICRegLoss()(x, z2), x)
show("vicreg_5_3_2", VICRegLoss(lambda_param=5.0, mu_param=3.0, nu_param=2.0, eps=1e-2)(x, z2), x)

# DINO: 2 teacher views (the student's first two), 4 student views (2 global, 2 local), B = 3,
# output_dim = 5; the teacher temperature warms up 0.04 -> 0.07 over 4 epochs; two calls, so the
# second sees the centre the first moved.
B, K = 3, 5
def view(v, scale):
    return torch.tensor([[math.sin(0.3 * (v + 1) * (b + 1) + 0.7 * k) * scale for k in range(K)] for b in range(B)])
teacher = [view(v, 2.0) for v in range(2)]
student = [view(v + 7, 1.5).requires_grad_(True) for v in range(4)]
loss = DINOLoss(output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=4,
                student_temp=0.1, center_momentum=0.9)
first = loss(teacher, student, epoch=1)
grads = torch.autograd.grad(first, student)
print("dino_epoch1", repr(first.item()), " ".join(repr(v) for g in grads for v in g.flatten().tolist()))
print("dino_center", " ".join(repr(v) for v in loss.center.flatten().tolist()))
second = loss([t * 0.5 for t in teacher], student, epoch=9)
grads = torch.autograd.grad(second, student)
print("dino_epoch9", repr(second.item()), " ".join(repr(v) for g in grads for v in g.flatten().tolist()))
