"""Knowledge distillation: a smaller student learns from the teacher's logits.

The loss is alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) plus
(1 - alpha) * cross-entropy with the true labels. Both models output logits;
the softmax is applied here exactly once (never to already-softmaxed outputs).
"""

from __future__ import annotations

from tinydeploy.runtime import _tf


def distillation_model(student, teacher, temperature: float = 4.0, alpha: float = 0.5):
    """A Keras model that trains ``student`` against ``teacher`` (frozen).

    Args:
        student: logits model to train.
        teacher: logits model, already trained; taking the same inputs.
        temperature: softening of both distributions.
        alpha: weight of the distillation term.

    Returns:
        A compiled-ready keras.Model wrapping the student; call fit(x, y).
    """
    keras = _tf.keras()
    tf = _tf.tensorflow()
    teacher.trainable = False

    class Distiller(keras.Model):
        def __init__(self):
            super().__init__()
            self.student, self.teacher = student, teacher
            self.hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.kl = keras.losses.KLDivergence()
            self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker, self.accuracy]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, y = data
            teacher_logits = self.teacher(x, training=False)
            with tf.GradientTape() as tape:
                logits = self.student(x, training=True)
                soft = self.kl(tf.nn.softmax(teacher_logits / temperature),
                               tf.nn.softmax(logits / temperature)) * temperature ** 2
                loss = alpha * soft + (1 - alpha) * self.hard(y, logits)
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
            self.loss_tracker.update_state(loss)
            self.accuracy.update_state(y, logits)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            logits = self.student(x, training=False)
            self.loss_tracker.update_state(self.hard(y, logits))
            self.accuracy.update_state(y, logits)
            return {m.name: m.result() for m in self.metrics}

    return Distiller()
